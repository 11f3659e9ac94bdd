/*
 * sqliteloop: the sqlite3 C API in a plain loop, the reference for the SQLite store's numbers.
 * Same file layout and schema as MicroSQLite (a table t_bench in DIR/bench.db, BLOB keys, WAL,
 * synchronous FULL), one thread, prepared statements:
 *
 *   sqliteloop DIR write|read SECONDS [VALUE_SIZE] [KEYS]
 *
 * write: an upsert of bench/<i> per transaction (autocommit), i counting up. read: KEYS keys
 * written first (one transaction), then SELECT by key, i modulo KEYS, of what is alive now
 * (the expiry column checked against the wall clock, as the store reads). Prints one JSON line:
 * op, ops, seconds, ops_per_sec.
 */
#define _POSIX_C_SOURCE 200809L
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall-clock milliseconds, as the store keeps expiry. */
static sqlite3_int64 wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (sqlite3_int64)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void check(sqlite3 *db, int rc, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqliteloop: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void exec(sqlite3 *db, const char *sql) {
    check(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

static void upsert(sqlite3 *db, sqlite3_stmt *put, long i, const unsigned char *value, int size) {
    char key[32];
    int n = snprintf(key, sizeof key, "bench/%ld", i);
    sqlite3_reset(put);
    sqlite3_bind_blob(put, 1, key, n, SQLITE_TRANSIENT);
    sqlite3_bind_blob(put, 2, value, size, SQLITE_STATIC);
    check(db, sqlite3_step(put), "upsert");
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: sqliteloop DIR write|read SECONDS [VALUE_SIZE] [KEYS]\n");
        return 2;
    }
    const char *op = argv[2];
    double seconds = atof(argv[3]);
    int size = argc > 4 ? atoi(argv[4]) : 100;
    long keys = argc > 5 ? atol(argv[5]) : 1000;
    char path[4096];
    snprintf(path, sizeof path, "%s/bench.db", argv[1]);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "sqliteloop: cannot open %s\n", path);
        return 1;
    }
    exec(db, "PRAGMA journal_mode = WAL");
    exec(db, "PRAGMA synchronous = FULL");
    exec(db, "CREATE TABLE IF NOT EXISTS \"t_bench\" (key BLOB PRIMARY KEY, value BLOB NOT NULL, metadata TEXT NOT NULL, "
             "expires INTEGER, version INTEGER NOT NULL) WITHOUT ROWID");
    sqlite3_stmt *put, *get;
    check(db, sqlite3_prepare_v2(db, "INSERT INTO \"t_bench\" (key, value, metadata, expires, version) VALUES (?1, ?2, '', NULL, 1) "
                                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = version + 1", -1, &put, NULL), "prepare");
    check(db, sqlite3_prepare_v2(db, "SELECT value, metadata, expires, version FROM \"t_bench\" WHERE key = ?1 AND (expires IS NULL OR expires > ?2)", -1, &get, NULL), "prepare");
    unsigned char *value = malloc((size_t)size + 1);
    memset(value, 'v', (size_t)size + 1);
    long ops = 0;
    double start, end;
    if (strcmp(op, "read") == 0) {
        exec(db, "BEGIN");
        for (long i = 0; i < keys; i++) upsert(db, put, i, value, size);
        exec(db, "COMMIT");
        start = now();
        end = start + seconds;
        size_t sum = 0;
        while (now() < end) {
            for (int batch = 0; batch < 64; batch++, ops++) {
                char key[32];
                int n = snprintf(key, sizeof key, "bench/%ld", ops % keys);
                sqlite3_reset(get);
                sqlite3_bind_blob(get, 1, key, n, SQLITE_TRANSIENT);
                sqlite3_bind_int64(get, 2, wall_ms());  /* what is alive now, as the store reads */
                if (sqlite3_step(get) != SQLITE_ROW) {
                    fprintf(stderr, "sqliteloop: %s is missing\n", key);
                    return 1;
                }
                sum += (size_t)sqlite3_column_bytes(get, 0);
            }
        }
        if (sum == 0) return 1;
    } else {
        start = now();
        end = start + seconds;
        while (now() < end) upsert(db, put, ops++, value, size);
    }
    double elapsed = now() - start;
    printf("{\"op\":\"%s\",\"ops\":%ld,\"seconds\":%.3f,\"ops_per_sec\":%.1f}\n", op, ops, elapsed, (double)ops / elapsed);
    exec(db, "DELETE FROM \"t_bench\"");
    sqlite3_finalize(put);
    sqlite3_finalize(get);
    sqlite3_close(db);
    free(value);
    return 0;
}
