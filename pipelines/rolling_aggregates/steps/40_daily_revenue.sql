-- Recompute daily_revenue for the days this batch touched: where the
-- changed payments were before and where they are now.

drop table if exists temp.touched_days;

create temp table touched_days as
select paid_day as day from stg_payments where paid_day is not null
union
select old_paid_day from stg_payments where old_paid_day is not null;

delete from daily_revenue
where day in (select day from touched_days);

insert into daily_revenue (day, paid_payments, revenue)
select paid_day, count(*), round(sum(coalesce(amount, 0)), 2)
from payments
where status = 'paid'
  and paid_day in (select day from touched_days)
group by paid_day;
