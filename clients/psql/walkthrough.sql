\set ON_ERROR_STOP 0
CREATE TOPIC psql_orders (id BIGINT NOT NULL, customer TEXT, amount NUMERIC(10,2), placed_at TIMESTAMP) WITH (partitions = 2, partition_key = 'customer');
INSERT INTO psql_orders VALUES (1, 'ada', 10.50, '2024-03-01 09:00:00'), (2, 'bob', 3.25, '2024-03-01 09:05:00');
\copy psql_orders FROM STDIN WITH (FORMAT csv)
3,ada,7.75,2024-03-01 10:00:00
4,"O'Brien, Pat",0.10,2024-03-02 00:00:00.5
5,,,
\.
SELECT id, customer, amount, placed_at FROM psql_orders ORDER BY id;
SELECT customer, count(*) AS orders, sum(amount) AS total FROM psql_orders WHERE customer IS NOT NULL GROUP BY customer ORDER BY customer;
SELECT count(DISTINCT _partition) <= 2 AS within_partitions, min(_offset) AS first_offset FROM psql_orders;
\copy (SELECT id, amount FROM psql_orders WHERE amount > 5 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)
SELECT * FROM psql_missing;
INSERT INTO psql_orders (id) VALUES (NULL);
SELECT count(*) AS still_five FROM psql_orders;
CREATE MATERIALIZED VIEW psql_by_customer AS SELECT customer, count(*) AS orders, sum(amount) AS total FROM psql_orders GROUP BY customer;
INSERT INTO psql_orders VALUES (6, 'bob', 1.75, '2024-03-03 12:00:00');
FLUSH;
SELECT * FROM psql_by_customer ORDER BY customer;
DROP TOPIC psql_orders;
DROP MATERIALIZED VIEW psql_by_customer;
DROP TOPIC psql_orders;
CREATE TABLE psql_people (id BIGINT PRIMARY KEY, name TEXT, city TEXT);
INSERT INTO psql_people VALUES (1, 'ann', 'paris'), (2, 'bob', 'rome');
INSERT INTO psql_people VALUES (2, 'bob', 'oslo');
UPDATE psql_people SET name = upper(name) WHERE id = 1;
DELETE FROM psql_people WHERE city = 'oslo';
INSERT INTO psql_people VALUES (1, 'ignored', 'x') ON CONFLICT (id) DO NOTHING;
SELECT * FROM psql_people ORDER BY id;
DROP TABLE psql_people;
