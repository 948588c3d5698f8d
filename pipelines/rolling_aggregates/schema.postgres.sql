-- PostgreSQL's version of schema.sql (keep the two in step). It differs in
-- types and in the view:
--   bigint, double precision  what SQLite's INTEGER and REAL hold (PostgreSQL's
--                             integer and real are 4 bytes);
--   revenue_7d                PostgreSQL has no julianday(): the window orders
--                             by the day as a date, 6 days back; and it rounds
--                             to decimals only a numeric.
-- sluice runs this file in one transaction: readers never find the view missing.

-- The latest version of each payment.
create table if not exists payments (
  payment_id        text primary key,
  customer_id       text not null,
  amount            double precision,
  status            text,
  paid_at           text,
  paid_day          text,
  _kafka_timestamp  bigint not null,
  _kafka_offset     bigint not null
);

create index if not exists payments_by_day on payments(paid_day);

-- Recomputed: revenue of paid payments per day.
create table if not exists daily_revenue (
  day            text primary key,
  paid_payments  bigint not null,
  revenue        double precision not null
);

-- Maintained: paid payments and revenue per customer, changed by deltas.
create table if not exists customer_totals (
  customer_id    text primary key,
  paid_payments  bigint not null,
  revenue        double precision not null
);

-- Rolling 7-day revenue (the day and the 6 before it), computed when
-- queried: daily_revenue has one row per day, so this stays cheap.
drop view if exists revenue_7d;

create view revenue_7d as
select
  day,
  revenue,
  round(cast(sum(revenue) over (
    order by cast(day as date) range between interval '6 days' preceding and current row
  ) as numeric), 2)::double precision as revenue_7d
from daily_revenue;
