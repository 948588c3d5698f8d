-- PostgreSQL runs schema.postgres.sql: the same tables, and the view without
-- julianday().

-- The latest version of each payment.
create table if not exists payments (
  payment_id        text primary key,
  customer_id       text not null,
  amount            real,
  status            text,
  paid_at           text,
  paid_day          text,
  _kafka_timestamp  integer not null,
  _kafka_offset     integer not null
);

create index if not exists payments_by_day on payments(paid_day);

-- Recomputed: revenue of paid payments per day.
create table if not exists daily_revenue (
  day            text primary key,
  paid_payments  integer not null,
  revenue        real not null
);

-- Maintained: paid payments and revenue per customer, changed by deltas.
create table if not exists customer_totals (
  customer_id    text primary key,
  paid_payments  integer not null,
  revenue        real not null
);

-- Rolling 7-day revenue (the day and the 6 before it), computed when
-- queried: daily_revenue has one row per day, so this stays cheap.
drop view if exists revenue_7d;

create view revenue_7d as
select
  day,
  revenue,
  round(sum(revenue) over (
    order by julianday(day) range between 6 preceding and current row
  ), 2) as revenue_7d
from daily_revenue;
