-- stg_readings: this batch's usable readings. _kafka_timestamp is when the
-- message reached the broker (or when the producer says it sent it), so
-- arrival is never taken as earlier than measurement. The range check keeps
-- values the time functions accept (years 0000 to 9999): an error there
-- would fail the batch.

drop table if exists stg_readings;

create temp table stg_readings as
select
  device_id,
  celsius,
  measured_ms,
  -- The later of the two, NULL when the broker gave no timestamp: SQLite's
  -- max(a, b) written so that PostgreSQL runs it too (its greatest() would
  -- skip the NULL).
  case
    when _kafka_timestamp > measured_ms then _kafka_timestamp
    when _kafka_timestamp <= measured_ms then measured_ms
  end as arrived_ms,
  _kafka_partition,
  _kafka_offset
from batch
where device_id is not null
  and celsius is not null
  and measured_ms between 0 and 253402300799999;
