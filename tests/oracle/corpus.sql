-- The differential corpus: everyday read queries, one per line, run on StreamHouse and on a real
-- PostgreSQL by tests/postgres_oracle.rs, which compares success, column names, type OIDs and
-- values (rows compared as a multiset unless the query has ORDER BY). Tables: setup.sql.
-- literals
SELECT 1
SELECT -1
SELECT 2147483647
SELECT 2147483648
SELECT 9223372036854775807
SELECT 1.5
SELECT 0.1 + 0.2
SELECT 1e3
SELECT 'hello'
SELECT 'it''s'
SELECT E'back\\slash'
SELECT E'tab\there'
SELECT $$dollar 'quoted'$$
SELECT $tag$with $$ inside$tag$
SELECT U&'d\0061t\+000061'
SELECT 'a' 'b'
SELECT true
SELECT false
SELECT NULL
SELECT NULL::int
SELECT NULL::text, NULL::int
SELECT 1 AS a, 2 AS a
SELECT 1, 2
SELECT 'x' AS "Mixed Case"
SELECT 1 AS x, 'a' AS y, true AS z
-- arithmetic
SELECT 1 + 1
SELECT 7 / 2
SELECT -7 / 2
SELECT 7 % 3
SELECT -7 % 3
SELECT 7.0 / 2
SELECT 2 * 3 + 4
SELECT 2 ^ 10
SELECT 10 - 20
SELECT 1.5 * 2
SELECT 9223372036854775807 + 1
SELECT 2147483647 + 1
SELECT -2147483648 - 1
SELECT 1 / 0
SELECT 1.0 / 0
SELECT 1 % 0
SELECT abs(-5)
SELECT abs(-5.5)
SELECT round(2.5)
SELECT round(3.14159, 2)
SELECT ceil(1.2)
SELECT floor(-1.2)
SELECT sqrt(16.0)
SELECT power(2, 3)
SELECT mod(10, 3)
SELECT greatest(1, 5, 3)
SELECT least(1, 5, 3)
SELECT sign(-3)
SELECT trunc(2.7)
SELECT 5 / 2.0
SELECT 1::float8 / 3
SELECT 0.1::float8 + 0.2::float8
SELECT 100::smallint * 2
SELECT 3::int / 2::int
-- casts
SELECT '42'::int
SELECT '3.7'::numeric::int
SELECT 3.7::int
SELECT -3.5::int
SELECT '2.5'::float8::int
SELECT 42::text
SELECT '1'::bigint + 1
SELECT 'abc'::varchar(2)
SELECT 'abc'::char(5)
SELECT CAST('7' AS integer)
SELECT CAST(1.25 AS numeric(10,1))
SELECT '1.5'::numeric
SELECT 'true'::boolean
SELECT 'yes'::boolean
SELECT 1::boolean
SELECT true::int
SELECT '2024-01-02'::date
SELECT '2024-01-02 03:04:05'::timestamp
SELECT '12:34:56'::time
SELECT 'abc'::int
SELECT '99999999999'::int
SELECT 300::smallint * 300::smallint
SELECT 1.0::real
SELECT '1e10'::float8
SELECT 123.456::numeric(5,1)
SELECT '0.000001'::numeric
-- strings
SELECT 'a' || 'b'
SELECT 'a' || NULL
SELECT 'a' || 1
SELECT length('hello')
SELECT upper('hello'), lower('HeLLo')
SELECT substring('hello' from 2 for 3)
SELECT substr('hello', 2, 3)
SELECT position('l' in 'hello')
SELECT trim('  x  ')
SELECT ltrim('  x'), rtrim('x  ')
SELECT trim(both 'x' from 'xxaxx')
SELECT replace('hello', 'l', 'L')
SELECT left('hello', 2), right('hello', 2)
SELECT lpad('5', 3, '0')
SELECT rpad('5', 3, '*')
SELECT reverse('abc')
SELECT repeat('ab', 3)
SELECT split_part('a,b,c', ',', 2)
SELECT concat('a', NULL, 'b', 1)
SELECT concat_ws('-', 'a', 'b', NULL, 'c')
SELECT initcap('hello world')
SELECT strpos('hello', 'll')
SELECT starts_with('hello', 'he')
SELECT 'abc' LIKE 'a%'
SELECT 'abc' ILIKE 'A%'
SELECT 'abc' NOT LIKE '%z%'
SELECT 'abc' ~ 'b'
SELECT 'abc' ~* 'B'
SELECT regexp_replace('a1b2', '[0-9]', 'X', 'g')
SELECT md5('abc')
SELECT chr(65), ascii('A')
SELECT to_hex(255)
SELECT translate('abc', 'ab', 'xy')
SELECT octet_length('héllo')
SELECT char_length('héllo')
SELECT 'a' < 'b'
SELECT 'B' < 'a'
SELECT format('%s-%s', 'a', 'b')
SELECT quote_ident('Foo')
SELECT quote_literal('it''s')
-- NULL handling
SELECT NULL = NULL
SELECT NULL IS NULL
SELECT 1 IS NOT NULL
SELECT NULL IS DISTINCT FROM NULL
SELECT 1 IS DISTINCT FROM 2
SELECT coalesce(NULL, 2, 3)
SELECT nullif(1, 1)
SELECT nullif(1, 2)
SELECT NULL AND false
SELECT NULL OR true
SELECT NOT NULL::boolean
SELECT 1 + NULL
SELECT count(NULL)
SELECT CASE WHEN NULL THEN 1 ELSE 2 END
-- dates and times
SELECT date '2024-02-28' + 1
SELECT date '2024-03-01' - date '2024-02-01'
SELECT date '2024-01-31' + interval '1 month'
SELECT timestamp '2024-01-01 10:00' + interval '90 minutes'
SELECT timestamp '2024-01-01 10:00' - timestamp '2023-12-31 09:30'
SELECT extract(year from date '2024-05-06')
SELECT extract(month from timestamp '2024-05-06 07:08:09')
SELECT extract(dow from date '2024-05-06')
SELECT extract(epoch from timestamp '2024-01-01 00:00:00')
SELECT date_part('day', date '2024-05-06')
SELECT date_trunc('month', timestamp '2024-05-06 07:08:09')
SELECT date_trunc('hour', timestamp '2024-05-06 07:08:09')
SELECT to_char(date '2020-03-04', 'YYYY-MM-DD')
SELECT to_char(timestamp '2020-03-04 05:06:07', 'HH24:MI:SS')
SELECT timestamp '2020-01-01 10:00'::text
SELECT date '2020-01-01'::text
SELECT interval '3 days 4 hours'
SELECT interval '1 day'::text
SELECT interval '90 minutes'
SELECT interval '1 year 2 months'
SELECT make_date(2024, 2, 29)
SELECT date '2024-01-01' < date '2024-01-02'
SELECT '2024-01-01T10:00:00'::timestamp
SELECT timestamp '2024-01-01 10:00:00.123456'
SELECT age(timestamp '2024-03-01', timestamp '2024-01-01')
SELECT to_timestamp(0)
SELECT timestamptz '2024-01-01 10:00:00+02'
SELECT timestamptz '2024-01-01 10:00:00+00' AT TIME ZONE 'America/New_York'
SELECT date '2024-01-01' = timestamp '2024-01-01 00:00:00'
-- conditional
SELECT CASE WHEN 1 > 0 THEN 'yes' ELSE 'no' END
SELECT CASE 2 WHEN 1 THEN 'one' WHEN 2 THEN 'two' END
SELECT CASE WHEN false THEN 1 END
SELECT 1 BETWEEN 0 AND 2
SELECT 5 NOT BETWEEN 0 AND 2
SELECT 2 IN (1, 2, 3)
SELECT 4 NOT IN (1, 2, NULL)
SELECT 1 = ANY(ARRAY[1, 2])
-- table reads
SELECT * FROM people
SELECT id, name FROM people WHERE city = 'London'
SELECT name FROM people WHERE age > 30 ORDER BY name
SELECT name FROM people ORDER BY age DESC, name
SELECT name, age FROM people ORDER BY age NULLS FIRST, name
SELECT name, age FROM people ORDER BY age DESC NULLS LAST, name
SELECT name FROM people WHERE city IS NULL
SELECT name FROM people WHERE city IN ('Paris', 'Oslo')
SELECT name FROM people WHERE name LIKE '%e%'
SELECT name FROM people ORDER BY id LIMIT 3
SELECT name FROM people ORDER BY id LIMIT 3 OFFSET 2
SELECT name FROM people ORDER BY id OFFSET 6
SELECT DISTINCT city FROM people
SELECT DISTINCT ON (city) city, name FROM people ORDER BY city, name
SELECT id * 2 AS doubled FROM people WHERE active
SELECT upper(name) FROM people WHERE NOT active
SELECT name, score FROM people WHERE score > 80
SELECT name, born FROM people WHERE born < '1990-01-01'
SELECT name, born FROM people WHERE born BETWEEN '1980-01-01' AND '1995-01-01'
SELECT p.name, p.city FROM people p WHERE p.id = 3
SELECT name, age / 10 AS decade FROM people
SELECT name, age::text || ' years' FROM people WHERE age IS NOT NULL
SELECT name, coalesce(city, 'unknown') FROM people
SELECT name, CASE WHEN age >= 40 THEN 'older' WHEN age < 40 THEN 'younger' END FROM people
SELECT id, amount FROM orders WHERE amount > 50 ORDER BY amount
SELECT id, placed FROM orders WHERE placed >= '2024-03-01'
SELECT id, amount * qty FROM orders
SELECT id, round(amount) FROM orders
SELECT note, length(note) FROM orders
SELECT id, placed::date FROM orders
SELECT id, extract(month from placed) FROM orders
SELECT id, date_trunc('day', placed) FROM orders
-- aggregates
SELECT count(*) FROM people
SELECT count(city) FROM people
SELECT count(DISTINCT city) FROM people
SELECT sum(age) FROM people
SELECT avg(age) FROM people
SELECT min(age), max(age) FROM people
SELECT sum(score) FROM people
SELECT avg(score) FROM people
SELECT sum(amount) FROM orders
SELECT avg(amount) FROM orders
SELECT sum(qty) FROM orders
SELECT sum(id) FROM orders
SELECT count(*) FROM people WHERE false
SELECT sum(age) FROM people WHERE false
SELECT max(name) FROM people
SELECT min(born) FROM people
SELECT city, count(*) FROM people GROUP BY city
SELECT city, count(*) FROM people GROUP BY city ORDER BY city
SELECT city, count(*) AS n FROM people GROUP BY city HAVING count(*) > 1
SELECT city, avg(age) FROM people GROUP BY city
SELECT city, sum(score) FROM people GROUP BY city
SELECT active, count(*) FROM people GROUP BY active
SELECT city, string_agg(name, ',' ORDER BY name) FROM people GROUP BY city
SELECT array_agg(id ORDER BY id) FROM people
SELECT bool_and(active), bool_or(active) FROM people
SELECT count(*) FILTER (WHERE age > 30) FROM people
SELECT stddev(age) FROM people
SELECT variance(age) FROM people
SELECT person_id, sum(amount), count(*) FROM orders GROUP BY person_id
SELECT extract(month from placed) AS m, count(*) FROM orders GROUP BY m
SELECT count(*), count(note), count(DISTINCT note) FROM orders
SELECT city, max(age) - min(age) FROM people GROUP BY city
SELECT sum(age) / count(age) FROM people
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY age) FROM people
SELECT city, count(*) FROM people GROUP BY ROLLUP (city)
SELECT mode() WITHIN GROUP (ORDER BY city) FROM people
-- window functions
SELECT name, row_number() OVER (ORDER BY id) FROM people
SELECT name, rank() OVER (ORDER BY age) FROM people
SELECT name, dense_rank() OVER (ORDER BY age) FROM people
SELECT name, city, row_number() OVER (PARTITION BY city ORDER BY name) FROM people
SELECT name, sum(age) OVER (ORDER BY id) FROM people
SELECT name, sum(age) OVER (PARTITION BY city) FROM people
SELECT name, avg(age) OVER () FROM people
SELECT name, lag(name) OVER (ORDER BY id) FROM people
SELECT name, lead(name, 2) OVER (ORDER BY id) FROM people
SELECT name, first_value(name) OVER (PARTITION BY city ORDER BY id) FROM people
SELECT name, count(*) OVER (PARTITION BY city) FROM people
SELECT id, sum(amount) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM orders
SELECT name, ntile(3) OVER (ORDER BY id) FROM people
SELECT name, percent_rank() OVER (ORDER BY id) FROM people
SELECT name, cume_dist() OVER (ORDER BY id) FROM people
-- CTEs and subqueries
WITH adults AS (SELECT * FROM people WHERE age >= 30) SELECT name FROM adults
WITH c AS (SELECT city, count(*) AS n FROM people GROUP BY city) SELECT * FROM c WHERE n > 1
WITH a AS (SELECT 1 AS x), b AS (SELECT x + 1 AS y FROM a) SELECT * FROM b
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r
WITH RECURSIVE f(n, f) AS (SELECT 1, 1::bigint UNION ALL SELECT n + 1, f * (n + 1) FROM f WHERE n < 10) SELECT * FROM f
SELECT * FROM (SELECT name, age FROM people) s WHERE age > 40
SELECT * FROM (SELECT count(*) FROM people) s
SELECT name FROM people WHERE age = (SELECT max(age) FROM people)
SELECT name FROM people WHERE id IN (SELECT person_id FROM orders)
SELECT name FROM people WHERE id NOT IN (SELECT person_id FROM orders)
SELECT name FROM people p WHERE EXISTS (SELECT 1 FROM orders o WHERE o.person_id = p.id)
SELECT name FROM people p WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.person_id = p.id)
SELECT name, (SELECT count(*) FROM orders o WHERE o.person_id = p.id) FROM people p
SELECT (SELECT max(age) FROM people)
SELECT name FROM people WHERE age > ALL (SELECT age FROM people WHERE city = 'Paris')
SELECT name FROM people WHERE age > ANY (SELECT age FROM people WHERE city = 'Paris')
SELECT name FROM people WHERE age < ALL (SELECT age FROM people WHERE age IS NOT NULL AND city = 'Berlin')
SELECT EXISTS (SELECT 1 FROM people WHERE age > 60)
-- joins
SELECT p.name, o.amount FROM people p JOIN orders o ON o.person_id = p.id
SELECT p.name, o.id FROM people p LEFT JOIN orders o ON o.person_id = p.id
SELECT p.name, o.id FROM people p RIGHT JOIN orders o ON o.person_id = p.id
SELECT p.name, o.id FROM people p FULL JOIN orders o ON o.person_id = p.id
SELECT p.name, count(o.id) FROM people p LEFT JOIN orders o ON o.person_id = p.id GROUP BY p.name
SELECT p.name, sum(o.amount) FROM people p JOIN orders o ON o.person_id = p.id GROUP BY p.name ORDER BY p.name
SELECT a.name, b.name FROM people a JOIN people b ON a.city = b.city AND a.id < b.id
SELECT count(*) FROM people CROSS JOIN orders
SELECT p.name FROM people p JOIN orders o USING (id)
SELECT * FROM people p JOIN orders o ON o.person_id = p.id WHERE o.amount > 100
SELECT p.city, o.note FROM people p, orders o WHERE p.id = o.person_id AND o.qty > 2
SELECT p.name, o.amount FROM people p JOIN orders o ON o.person_id = p.id AND o.amount > 10
-- set operations
SELECT 1 UNION SELECT 2
SELECT 1 UNION SELECT 1
SELECT 1 UNION ALL SELECT 1
SELECT city FROM people UNION SELECT note FROM orders
SELECT city FROM people INTERSECT SELECT city FROM people WHERE age > 40
SELECT city FROM people EXCEPT SELECT city FROM people WHERE age > 40
SELECT city FROM people INTERSECT ALL SELECT city FROM people
SELECT city FROM people EXCEPT ALL SELECT city FROM people WHERE id < 3
SELECT 1 AS a UNION SELECT 2 ORDER BY a DESC
SELECT 1, 'a' UNION ALL SELECT 2, 'b'
VALUES (1, 'a'), (2, 'b')
SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(n, s)
-- arrays
SELECT ARRAY[1, 2, 3]
SELECT ARRAY['a', 'b']
SELECT ARRAY[1, 2, 3][2]
SELECT array_length(ARRAY[1, 2, 3], 1)
SELECT cardinality(ARRAY[1, 2, 3])
SELECT array_to_string(ARRAY[1, 2, 3], ',')
SELECT array_append(ARRAY[1, 2], 3)
SELECT array_cat(ARRAY[1], ARRAY[2, 3])
SELECT 2 = ANY(ARRAY[1, 2, 3])
SELECT unnest(ARRAY[1, 2, 3])
SELECT ARRAY[1, NULL, 3]
SELECT array_position(ARRAY['a', 'b'], 'b')
SELECT string_to_array('a,b,c', ',')
SELECT ARRAY[[1, 2], [3, 4]]
-- set-returning functions
SELECT * FROM generate_series(1, 5)
SELECT generate_series(1, 3)
SELECT * FROM generate_series(1, 10, 3)
SELECT count(*) FROM generate_series(1, 1000)
SELECT sum(x) FROM generate_series(1, 100) AS g(x)
-- JSON
SELECT '{"a": 1}'::json
SELECT '{"a": 1}'::jsonb
SELECT '{"a": {"b": 2}}'::jsonb -> 'a'
SELECT '{"a": "x"}'::jsonb ->> 'a'
SELECT '{"a": {"b": 2}}'::jsonb #>> '{a,b}'
SELECT '[1, 2, 3]'::jsonb -> 1
-- bytea and uuid
SELECT '\x0001ff'::bytea
SELECT 'abc'::bytea
SELECT length('\x0001ff'::bytea)
SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid
SELECT md5('abc')::uuid
-- system functions
SELECT pg_typeof(1)
SELECT pg_typeof(1.5)
SELECT pg_typeof('a'::text)
SELECT current_schema()
SELECT current_database()
SELECT version() LIKE 'PostgreSQL%'
SELECT current_setting('datestyle')
SELECT 1 FROM pg_catalog.pg_class LIMIT 0
-- EXISTS as a value, integer overflow
SELECT name, EXISTS (SELECT 1 FROM orders o WHERE o.person_id = p.id) FROM people p
SELECT EXISTS (SELECT max(age) FROM people WHERE false)
SELECT NOT EXISTS (SELECT 1 FROM orders WHERE amount > 1000)
SELECT sum(x) FROM (VALUES (9223372036854775807::bigint), (1)) t(x)
SELECT age * 100000000 FROM people WHERE id = 1
SELECT id FROM people WHERE age * 1000000000 > 0
SELECT 2147483647 + 1 - 1
SELECT quote_literal(E'a\\b'), quote_literal(NULL)
SELECT 1 IN (SELECT 1) AS a, 2 IN (SELECT 1) AS b, NULL::int IN (SELECT 1) AS c, NULL::int IN (SELECT 1 WHERE false) AS d, 2 IN (SELECT NULL::int) AS e
SELECT 2 NOT IN (SELECT NULL::int UNION ALL SELECT 3) AS f, 3 NOT IN (SELECT 3) AS g, 1 NOT IN (SELECT 2 WHERE false) AS h
SELECT id, id IN (SELECT person_id FROM orders) AS ordered FROM people ORDER BY id
SELECT id, city NOT IN (SELECT city FROM people WHERE age > 40) FROM people ORDER BY id
SELECT name FROM people ORDER BY CASE WHEN id IN (SELECT person_id FROM orders) THEN 0 ELSE 1 END, name
SELECT name, (SELECT max(amount) FROM orders o WHERE o.person_id = p.id) FROM people p ORDER BY id
SELECT name, (SELECT note FROM orders o WHERE o.id = p.id + 99) FROM people p ORDER BY id
SELECT (SELECT note FROM orders)
SELECT quote_ident('select'), quote_ident('Foo'), quote_ident('abs'), quote_ident('a b')
SELECT parse_ident('public."Foo".bar'), parse_ident('Bids')
SELECT array_lower(ARRAY[1, 2], 1), array_upper(ARRAY[1, 2], 1), array_lower('{}'::int[], 1)
SELECT x FROM generate_series(1, 3) AS x ORDER BY x
SELECT 'ab_c' LIKE 'ab/_c' ESCAPE '/', 'abxc' LIKE 'ab/_c' ESCAPE '/', 'a\b' LIKE 'a\b' ESCAPE '#'
SELECT to_regtype('integer')::int, to_regtype('nothing'), to_regclass('nothing')
SELECT pg_typeof(NULL), pg_typeof(now()), pg_typeof(ARRAY[1, 2]), pg_typeof('a'::varchar)
