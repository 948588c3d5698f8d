-- Curated tables of the orders pipeline. Runs at every start: keep it idempotent.
-- One file for both engines: bigint and double precision are what SQLite's
-- INTEGER and REAL hold (PostgreSQL's integer and real are 4 bytes), and
-- SQLite gives those names the same INTEGER and REAL affinity.

create table if not exists orders_curated (
  order_id          text primary key,
  customer_id       bigint,
  customer_name     text,
  region            text not null,
  product_id        text,
  product_name      text,
  category          text not null,
  amount            double precision,
  currency          text,
  status            text not null,      -- of the newest event that had one
  status_timestamp  bigint,             -- that event's broker timestamp and offset
  status_offset     bigint,
  event_time        text,
  event_hour        text,               -- hour of event_time, for revenue_hourly
  _kafka_timestamp  bigint not null,    -- broker timestamp of the version kept
  _kafka_partition  bigint not null,
  _kafka_offset     bigint not null,
  updated_at        text not null
);

create index if not exists orders_curated_by_event_hour on orders_curated(event_hour);

-- Revenue of non-cancelled orders by the hour of their latest event.
create table if not exists revenue_hourly (
  hour       text not null,            -- 2026-11-21T08:00:00Z
  region     text not null,
  category   text not null,
  currency   text not null,
  orders     bigint not null,
  revenue    double precision not null,
  primary key (hour, region, category, currency)
);
