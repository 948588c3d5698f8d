-- Curated tables of the orders pipeline. Runs at every start: keep it idempotent.

create table if not exists orders_curated (
  order_id          text primary key,
  customer_id       integer,
  customer_name     text,
  region            text not null,
  product_id        text,
  product_name      text,
  category          text not null,
  amount            real,
  currency          text,
  status            text not null,      -- of the newest event that had one
  status_timestamp  integer,            -- that event's broker timestamp and offset
  status_offset     integer,
  event_time        text,
  event_hour        text,               -- hour of event_time, for revenue_hourly
  _kafka_timestamp  integer not null,   -- broker timestamp of the version kept
  _kafka_partition  integer not null,
  _kafka_offset     integer not null,
  updated_at        text not null
);

create index if not exists orders_curated_by_event_hour on orders_curated(event_hour);

-- Revenue of non-cancelled orders by the hour of their latest event.
create table if not exists revenue_hourly (
  hour       text not null,            -- 2026-11-21T08:00:00Z
  region     text not null,
  category   text not null,
  currency   text not null,
  orders     integer not null,
  revenue    real not null,
  primary key (hour, region, category, currency)
);
