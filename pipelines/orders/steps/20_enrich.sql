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

-- Hours whose revenue this batch may change: where the orders were before
-- the upsert, and where they are now. 40_revenue.sql recomputes them.
drop table if exists temp.touched_hours;

create temp table touched_hours as
select c.event_hour as hour
from orders_curated as c
join int_orders as i on i.order_id = c.order_id
union
select event_hour from int_orders;
