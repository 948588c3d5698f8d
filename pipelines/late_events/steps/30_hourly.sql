-- Add each reading to the hour it was measured in if it arrived at most one
-- hour (3600000 ms) after; keep later ones in late_readings.

insert into readings_hourly (device_id, hour, readings, min_celsius, max_celsius, sum_celsius)
select
  device_id,
  date_trunc('hour', measured_ms),
  count(*),
  min(celsius),
  max(celsius),
  sum(celsius)
from stg_readings
where arrived_ms - measured_ms <= 3600000
group by 1, 2
on conflict (device_id, hour) do update set
  readings    = readings_hourly.readings + excluded.readings,
  -- SQLite's min(a, b) and max(a, b) as CASE, which PostgreSQL runs too
  -- (neither side is NULL here).
  min_celsius = case when excluded.min_celsius < readings_hourly.min_celsius
                     then excluded.min_celsius else readings_hourly.min_celsius end,
  max_celsius = case when excluded.max_celsius > readings_hourly.max_celsius
                     then excluded.max_celsius else readings_hourly.max_celsius end,
  sum_celsius = readings_hourly.sum_celsius + excluded.sum_celsius;

insert into late_readings (device_id, celsius, measured_at, arrived_at, late_minutes)
select
  device_id,
  celsius,
  to_timestamp(measured_ms),
  to_timestamp(arrived_ms),
  (arrived_ms - measured_ms) / 60000
from stg_readings
where arrived_ms - measured_ms > 3600000;
