-- Tables for the differential corpus, created on both servers. A line starting with
-- `postgres:` or `streamhouse:` runs on that server only.
postgres: CREATE TABLE people (id int, name text, city text, age int, score numeric(10,2), born date, active boolean)
streamhouse: CREATE TOPIC people (id int, name text, city text, age int, score numeric(10,2), born date, active boolean)
postgres: CREATE TABLE orders (id bigint, person_id int, amount double precision, qty smallint, placed timestamp, note text)
streamhouse: CREATE TOPIC orders (id bigint, person_id int, amount double precision, qty smallint, placed timestamp, note text)
INSERT INTO people VALUES (1, 'Ada', 'London', 36, 91.50, '1990-12-10', true), (2, 'Bob', 'Paris', 41, 78.25, '1985-03-01', false), (3, 'Cy', 'London', NULL, 66.00, '2001-07-04', true), (4, 'Dee', NULL, 29, NULL, NULL, NULL), (5, 'Eve', 'Berlin', 52, 88.75, '1972-02-29', true), (6, 'Fay', 'Paris', 23, 45.10, '2003-11-30', false), (7, 'Gus', 'Berlin', 36, 91.50, '1990-01-15', true), (8, 'it''s', 'Oslo', 64, 12.34, '1962-06-06', false)
INSERT INTO orders VALUES (100, 1, 19.99, 2, '2024-01-01 10:00:00', 'first'), (101, 1, 5.5, 1, '2024-01-02 11:30:00', NULL), (102, 2, 120.0, 10, '2024-01-02 12:00:00', 'bulk'), (103, 3, 0.1, 3, '2024-02-10 08:15:30', 'tiny'), (104, 3, 0.2, 3, '2024-02-10 08:15:31', 'tiny'), (105, 5, 250.25, 1, '2024-03-15 23:59:59', 'big'), (106, 7, 33.33, 3, '2024-03-16 00:00:00', NULL), (107, 9, 1.0, 1, '2024-04-01 00:00:00', 'orphan'), (108, 5, NULL, NULL, NULL, 'empty'), (109, 2, 75.0, 5, '2024-12-31 23:00:00', 'year end')
