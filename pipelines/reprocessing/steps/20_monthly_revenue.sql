-- Recompute the touched months from invoices: the result depends only on
-- what invoices holds, so a replay cannot count anything twice.

delete from monthly_revenue
where month in (select month from touched_months);

insert into monthly_revenue (month, invoices, revenue)
select issued_month, count(*), round(sum(coalesce(amount, 0)), 2)
from invoices
where issued_month in (select month from touched_months)
group by issued_month;
