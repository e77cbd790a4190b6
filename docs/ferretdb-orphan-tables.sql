-- Repairs FerretDB 1.x on PostgreSQL after it stopped while creating a collection.
--
-- FerretDB creates a collection's table, then records it in the database's
-- _ferretdb_database_metadata table. Stopped in between, it leaves a table it does not know,
-- and every later attempt to create that collection fails with
-- `relation "<collection>_<hash>" already exists (SQLSTATE 42P07)`: Pulse then keeps the
-- events in Redis and logs that this repair is needed (docs/operations.md, "A collection
-- FerretDB cannot create").
--
-- Run it with FerretDB stopped (it reads its catalogue at start), as the user FerretDB
-- connects as:  psql --dbname "$POSTGRESQL_URL" -v ON_ERROR_STOP=1 -f ferretdb-orphan-tables.sql
-- It drops only tables that FerretDB's catalogue does not name and that hold no row (rows are
-- only ever written through the catalogue, so such a table never held data), and says what it
-- dropped. A table with rows is kept and reported. Running it again changes nothing.
DO $repair$
DECLARE
  db text;
  orphan text;
  has_rows boolean;
BEGIN
  FOR db IN
    SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = '_ferretdb_database_metadata' AND c.relkind = 'r'
  LOOP
    FOR orphan IN EXECUTE format(
      'SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %L AND c.relkind = ''r'' AND c.relname NOT LIKE ''\_ferretdb\_%%''
          AND c.relname NOT IN (SELECT _jsonb->>''table'' FROM %I._ferretdb_database_metadata)',
      db, db)
    LOOP
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', db, orphan) INTO has_rows;
      IF has_rows THEN
        RAISE WARNING 'kept %.%: FerretDB''s catalogue does not name it, but it holds rows', db, orphan;
      ELSE
        EXECUTE format('DROP TABLE %I.%I', db, orphan);
        RAISE NOTICE 'dropped %.%: an empty table FerretDB made and never recorded', db, orphan;
      END IF;
    END LOOP;
  END LOOP;
END
$repair$;
