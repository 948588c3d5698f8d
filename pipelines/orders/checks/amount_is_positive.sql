-- An order's amount is positive: zero or below in the curated table means a
-- producer bug or a cleaning step gone wrong. A failing check fails the batch
-- (severity error, the default): it rolls back and the offsets stay, so bad
-- data never reaches the dashboards. It looks only at the orders of this
-- batch (stg_orders, built by steps/10_dedup.sql), so its cost follows
-- the batch, not the table.
select order_id, amount
from orders_curated
where amount <= 0
  and order_id in (select order_id from stg_orders);
