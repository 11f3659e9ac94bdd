#ifndef MICRO_SQLITE_NOIO_H
#define MICRO_SQLITE_NOIO_H

/* A SQLite VFS, "micro-noio", that is the default one except that a thread can forbid it to
 * read files: while forbidden, a read SQLite would make (a page not in the connection's cache, a
 * frame of the WAL) fails at once instead, and the thread is told. An event loop runs a query on
 * a connection of its own this way: answered from memory, or not at all (the query goes to a
 * thread that may wait for the disk), never blocking the loop. */

/* Registers the VFS (idempotent; not the default). 0, or a SQLite error code. */
int mc_sqlite_noio_register(void);

/* The VFS's name, for sqlite3_open_v2. */
extern const char *const mc_sqlite_noio_name;

/* Forbids file reads on this thread until mc_sqlite_noio_end. */
void mc_sqlite_noio_begin(void);

/* Allows them again; returns 1 if a read was refused since mc_sqlite_noio_begin. */
int mc_sqlite_noio_end(void);

#endif
