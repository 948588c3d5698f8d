-- PostgreSQL only: the view that schema.sql creates on SQLite (see
-- schema.postgres.sql for why it is created here). Each sale with the
-- store's current region (type 1: joined when queried, so a reloaded seed
-- applies to past sales too).
--
-- Created when missing, not replaced at every batch: replacing a view locks
-- it until the batch commits, and readers would wait for every batch. To
-- change it, or to change the columns of seeds/stores.csv (the view keeps
-- sluice from dropping the seed table to reload it with other columns),
-- drop it by hand: the next batch creates it again.
do $$
begin
  if to_regclass('sales_current_region') is null then
    create view sales_current_region as
    select s.sale_id, s.store_id, s.amount, s.sold_at, coalesce(st.region, 'unknown') as region
    from sales_curated as s
    left join stores as st on st.store_id = s.store_id and st.valid_to is null;
  end if;
end
$$;
