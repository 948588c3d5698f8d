-- The newest reading of each device, by measurement time.
create table if not exists device_state (
  device_id     text primary key,
  celsius       real not null,
  measured_at   text not null,
  measured_ms   integer not null,
  _kafka_offset integer not null
);

-- Readings per device and hour of measurement. count, min, max and sum do
-- not depend on arrival order, so a late reading is simply added.
create table if not exists readings_hourly (
  device_id   text not null,
  hour        text not null,
  readings    integer not null,
  min_celsius real not null,
  max_celsius real not null,
  sum_celsius real not null,
  primary key (device_id, hour)
);

-- Readings that arrived more than an hour after they were measured: kept
-- for inspection, not added to hours that reports may already have used.
create table if not exists late_readings (
  device_id    text not null,
  celsius      real not null,
  measured_at  text not null,
  arrived_at   text not null,
  late_minutes integer not null
);
