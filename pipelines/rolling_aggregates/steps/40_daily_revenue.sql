-- Recompute daily_revenue for the days this batch touched: where the
-- changed payments were before and where they are now.

drop table if exists touched_days;

create temp table touched_days as
select paid_day as day from stg_payments where paid_day is not null
union
select old_paid_day from stg_payments where old_paid_day is not null;

delete from daily_revenue
where day in (select day from touched_days);

-- round(cast(x as numeric), 2): PostgreSQL rounds to decimals only a numeric;
-- SQLite's cast leaves a REAL as it is, so its round() sees the same value.
insert into daily_revenue (day, paid_payments, revenue)
select paid_day, count(*), round(cast(sum(coalesce(amount, 0)) as numeric), 2)
from payments
where status = 'paid'
  and paid_day in (select day from touched_days)
group by paid_day;
