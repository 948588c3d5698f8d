-- bigint and double precision: what SQLite's INTEGER and REAL hold, on both
-- engines (PostgreSQL's integer and real are 4 bytes; SQLite gives these
-- names INTEGER and REAL affinity).

-- The newest reading of each device, by measurement time.
create table if not exists device_state (
  device_id     text primary key,
  celsius       double precision not null,
  measured_at   text not null,
  measured_ms   bigint not null,
  _kafka_offset bigint not null
);

-- Readings per device and hour of measurement. count, min, max and sum do
-- not depend on arrival order, so a late reading is simply added.
create table if not exists readings_hourly (
  device_id   text not null,
  hour        text not null,
  readings    bigint not null,
  min_celsius double precision not null,
  max_celsius double precision not null,
  sum_celsius double precision not null,
  primary key (device_id, hour)
);

-- Readings that arrived more than an hour after they were measured: kept
-- for inspection, not added to hours that reports may already have used.
create table if not exists late_readings (
  device_id    text not null,
  celsius      double precision not null,
  measured_at  text not null,
  arrived_at   text not null,
  late_minutes bigint not null
);
