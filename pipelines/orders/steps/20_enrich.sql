-- int_orders: stg_orders joined to the customers and products seeds.
-- Unknown customers or products keep the order, with region/category 'unknown'.

drop table if exists int_orders;

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
  o.status_timestamp,
  o.status_offset,
  o.event_time,
  o.event_hour,
  o._kafka_timestamp,
  o._kafka_partition,
  o._kafka_offset
from stg_orders as o
left join customers as c on c.customer_id = o.customer_id
left join products  as p on p.product_id  = o.product_id;

-- The stored rows of the orders in this batch, as they are before
-- 30_upsert.sql changes them: 40_revenue.sql takes their contribution out of
-- revenue_hourly and adds the rows as they are after.
drop table if exists orders_before;

create temp table orders_before as
select c.order_id, c.event_hour, c.region, c.category, c.currency, c.amount, c.status
from orders_curated as c
join int_orders as i on i.order_id = c.order_id;
