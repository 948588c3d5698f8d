-- Recompute the touched months from invoices: the result depends only on
-- what invoices holds, so a replay cannot count anything twice.

delete from monthly_revenue
where month in (select month from touched_months);

-- round(cast(x as numeric), 2): PostgreSQL rounds to decimals only a numeric;
-- SQLite's cast leaves a REAL as it is, so its round() sees the same value.
insert into monthly_revenue (month, invoices, revenue)
select issued_month, count(*), round(cast(sum(coalesce(amount, 0)) as numeric), 2)
from invoices
where issued_month in (select month from touched_months)
group by issued_month;
