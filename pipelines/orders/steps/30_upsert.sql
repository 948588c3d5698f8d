-- MERGE the batch into orders_curated: insert new orders, update known ones
-- only when the incoming version is not older (by broker timestamp, then
-- offset). An older event arriving late never overwrites a newer one; the
-- same version read again (after `sluice reset`) is rewritten, so a fixed
-- step applies to reprocessed data. (10_dedup has already carried the last
-- known status into events that had none.)

insert into orders_curated (
  order_id, customer_id, customer_name, region, product_id, product_name, category,
  amount, currency, status, event_time, event_hour, _kafka_timestamp, _kafka_partition, _kafka_offset, updated_at
)
select
  order_id, customer_id, customer_name, region, product_id, product_name, category,
  amount, currency, status, event_time, event_hour, _kafka_timestamp, _kafka_partition, _kafka_offset,
  strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
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
  status           = excluded.status,
  event_time       = excluded.event_time,
  event_hour       = excluded.event_hour,
  _kafka_timestamp = excluded._kafka_timestamp,
  _kafka_partition = excluded._kafka_partition,
  _kafka_offset    = excluded._kafka_offset,
  updated_at       = excluded.updated_at
where (excluded._kafka_timestamp, excluded._kafka_offset)
    >= (orders_curated._kafka_timestamp, orders_curated._kafka_offset);
