-- PostgreSQL's version of 30_upsert.sql (keep the two in step). It differs
-- only in the clock: SQLite's strftime(..., 'now') is to_char() of
-- statement_timestamp() here, in the same format (2026-11-21T08:34:19.706Z).

-- MERGE the batch into orders_curated. The version columns take the batch's
-- latest event when it is not older than the stored one (by broker timestamp,
-- then offset): an older event arriving late never overwrites a newer one,
-- and the same version read again (after `sluice reset`) is rewritten, so a
-- fixed step applies to reprocessed data. The status follows its own, newer
-- event, even when that event arrived late.

insert into orders_curated (
  order_id, customer_id, customer_name, region, product_id, product_name, category,
  amount, currency, status, status_timestamp, status_offset, event_time, event_hour,
  _kafka_timestamp, _kafka_partition, _kafka_offset, updated_at
)
select
  order_id, customer_id, customer_name, region, product_id, product_name, category,
  amount, currency, coalesce(status, 'unknown'), status_timestamp, status_offset, event_time, event_hour,
  _kafka_timestamp, _kafka_partition, _kafka_offset,
  to_char(statement_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
from int_orders
where true  -- lets SQLite parse the ON CONFLICT clause after a SELECT
on conflict (order_id) do update set
  customer_id      = excluded.customer_id,
  customer_name    = excluded.customer_name,
  region           = excluded.region,
  product_id       = excluded.product_id,
  product_name     = excluded.product_name,
  category         = excluded.category,
  amount           = excluded.amount,
  currency         = excluded.currency,
  event_time       = excluded.event_time,
  event_hour       = excluded.event_hour,
  _kafka_timestamp = excluded._kafka_timestamp,
  _kafka_partition = excluded._kafka_partition,
  _kafka_offset    = excluded._kafka_offset,
  updated_at       = excluded.updated_at
where (excluded._kafka_timestamp, excluded._kafka_offset)
    >= (orders_curated._kafka_timestamp, orders_curated._kafka_offset);

-- The status, from the newest event that carried one.
update orders_curated
set
  status           = i.status,
  status_timestamp = i.status_timestamp,
  status_offset    = i.status_offset,
  updated_at       = to_char(statement_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
from int_orders as i
where i.order_id = orders_curated.order_id
  and i.status is not null
  and (orders_curated.status_timestamp is null
       or (i.status_timestamp, i.status_offset)
          >= (orders_curated.status_timestamp, orders_curated.status_offset));
