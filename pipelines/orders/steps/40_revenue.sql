-- revenue_hourly: recompute the hours this batch touched from orders_curated.
-- Recomputing (rather than adding deltas) stays right when an order changes
-- amount, status or hour, and when a late event is ignored.

delete from revenue_hourly
where hour in (select hour from touched_hours);

insert into revenue_hourly (hour, region, category, currency, orders, revenue)
select
  event_hour                                 as hour,
  region,
  category,
  coalesce(currency, 'unknown')              as currency,
  count(*)                                   as orders,
  round(sum(coalesce(amount, 0)), 2)         as revenue
from orders_curated
where status <> 'cancelled'
  and event_hour in (select hour from touched_hours)
group by 1, 2, 3, 4;
