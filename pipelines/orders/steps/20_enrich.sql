-- int_orders: stg_orders joined to the customers and products seeds.
-- Unknown customers or products keep the order, with region/category 'unknown'.

drop table if exists temp.int_orders;

create temp table int_orders as
select
  o.order_id,
  o.customer_id,
  c.name                          as customer_name,
  coalesce(c.region, 'unknown')   as region,
  o.product_id,
  p.name                          as product_name,
  coalesce(p.category, 'unknown') as category,
  o.amount,
  o.currency,
  o.status,
  o.event_time,
  o.event_hour,
  o._kafka_timestamp,
  o._kafka_partition,
  o._kafka_offset
from stg_orders as o
left join customers as c on c.customer_id = o.customer_id
left join products  as p on p.product_id  = o.product_id;

-- The stored versions this batch replaces (30_upsert.sql replaces a row
-- when the incoming version is not older). 40_revenue.sql takes their
-- contribution out of revenue_hourly before adding the new versions'.
drop table if exists temp.replaced_orders;

create temp table replaced_orders as
select c.order_id, c.event_hour, c.region, c.category, c.currency, c.amount, c.status
from orders_curated as c
join int_orders as i on i.order_id = c.order_id
where (i._kafka_timestamp, i._kafka_offset) >= (c._kafka_timestamp, c._kafka_offset);
