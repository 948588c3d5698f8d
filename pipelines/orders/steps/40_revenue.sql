-- revenue_hourly: revenue of non-cancelled orders by the hour of their latest
-- event, maintained incrementally: each batch takes out the contribution of
-- its orders as they were (orders_before) and adds them as they are now. The
-- cost follows the batch, not the table. (The rolling_aggregates recipe shows the other
-- way: recompute the touched groups from the curated table.)

drop table if exists revenue_delta;

create temp table revenue_delta as
select hour, region, category, currency, sum(orders) as orders, sum(revenue) as revenue
from (
  select event_hour as hour, region, category, coalesce(currency, 'unknown') as currency,
         -1 as orders, -coalesce(amount, 0) as revenue
  from orders_before
  where status <> 'cancelled' and event_hour is not null
  union all
  select c.event_hour, c.region, c.category, coalesce(c.currency, 'unknown'),
         1, coalesce(c.amount, 0)
  from orders_curated as c
  join int_orders as i on i.order_id = c.order_id
  where c.status <> 'cancelled' and c.event_hour is not null
) as changes
group by 1, 2, 3, 4;

-- round(cast(x as numeric), 2): PostgreSQL rounds to decimals only a numeric;
-- SQLite's cast leaves a REAL as it is, so its round() sees the same value.
-- In key order: workers of one group that upsert the same hours take the
-- rows' locks in the same order, so they wait for each other instead of
-- deadlocking.
insert into revenue_hourly (hour, region, category, currency, orders, revenue)
select hour, region, category, currency, orders, round(cast(revenue as numeric), 2)
from revenue_delta
where true  -- lets SQLite parse the ON CONFLICT clause after a SELECT
order by hour, region, category, currency
on conflict (hour, region, category, currency) do update set
  orders  = revenue_hourly.orders + excluded.orders,
  revenue = round(cast(revenue_hourly.revenue + excluded.revenue as numeric), 2);

delete from revenue_hourly
where orders = 0
  and (hour, region, category, currency) in (select hour, region, category, currency from revenue_delta);
