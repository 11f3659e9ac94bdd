#include "sqlite_noio.h"

#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

const char *const mc_sqlite_noio_name = "micro-noio";

/* 0: reads allowed; 1: forbidden; 2: forbidden, and one was refused */
static _Thread_local int forbidden;

void mc_sqlite_noio_begin(void) { forbidden = 1; }

int mc_sqlite_noio_end(void) {
    int refused = forbidden == 2;
    forbidden = 0;
    return refused;
}

static sqlite3_vfs *base;    /* the default VFS, which does the work */
static sqlite3_vfs vfs;      /* ours: base with xOpen replaced */

/* Our file: the base VFS's file follows it in the same allocation. */
typedef struct {
    sqlite3_file file;
    sqlite3_file *real;
} noio_file;

static sqlite3_file *real(sqlite3_file *f) { return ((noio_file *)f)->real; }

static int refuse(void) {
    forbidden = 2;
    return SQLITE_IOERR_READ;
}

static int x_close(sqlite3_file *f) {
    int rc = SQLITE_OK;
    if (real(f)->pMethods) rc = real(f)->pMethods->xClose(real(f));
    f->pMethods = NULL;
    return rc;
}

static int x_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
    if (forbidden) return refuse();
    return real(f)->pMethods->xRead(real(f), buf, n, off);
}

static int x_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off) {
    return real(f)->pMethods->xWrite(real(f), buf, n, off);
}

static int x_truncate(sqlite3_file *f, sqlite3_int64 size) { return real(f)->pMethods->xTruncate(real(f), size); }
static int x_sync(sqlite3_file *f, int flags) { return real(f)->pMethods->xSync(real(f), flags); }
static int x_file_size(sqlite3_file *f, sqlite3_int64 *size) { return real(f)->pMethods->xFileSize(real(f), size); }
static int x_lock(sqlite3_file *f, int lock) { return real(f)->pMethods->xLock(real(f), lock); }
static int x_unlock(sqlite3_file *f, int lock) { return real(f)->pMethods->xUnlock(real(f), lock); }
static int x_check_reserved(sqlite3_file *f, int *out) { return real(f)->pMethods->xCheckReservedLock(real(f), out); }
static int x_file_control(sqlite3_file *f, int op, void *arg) { return real(f)->pMethods->xFileControl(real(f), op, arg); }
static int x_sector_size(sqlite3_file *f) { return real(f)->pMethods->xSectorSize(real(f)); }
static int x_device(sqlite3_file *f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); }

/* The WAL index is shared memory (a mapped file that every connection touches): allowed. */
static int x_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **pp) {
    return real(f)->pMethods->xShmMap(real(f), page, size, extend, pp);
}
static int x_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
    return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
}
static void x_shm_barrier(sqlite3_file *f) { real(f)->pMethods->xShmBarrier(real(f)); }
static int x_shm_unmap(sqlite3_file *f, int del) { return real(f)->pMethods->xShmUnmap(real(f), del); }

/* A page of a memory-mapped file may have to come from the disk: while forbidden, no mapping is
 * handed out, so SQLite asks x_read instead, which refuses. */
static int x_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
    if (forbidden) {
        *pp = NULL;
        return SQLITE_OK;
    }
    return real(f)->pMethods->xFetch(real(f), off, n, pp);
}
static int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) { return real(f)->pMethods->xUnfetch(real(f), off, p); }

/* One table per version of the base file's methods, each listing only what that version has. */
static sqlite3_io_methods methods[3];

static void fill_methods(void) {
    for (int v = 1; v <= 3; v++) {
        sqlite3_io_methods *m = &methods[v - 1];
        memset(m, 0, sizeof *m);
        m->iVersion = v;
        m->xClose = x_close;
        m->xRead = x_read;
        m->xWrite = x_write;
        m->xTruncate = x_truncate;
        m->xSync = x_sync;
        m->xFileSize = x_file_size;
        m->xLock = x_lock;
        m->xUnlock = x_unlock;
        m->xCheckReservedLock = x_check_reserved;
        m->xFileControl = x_file_control;
        m->xSectorSize = x_sector_size;
        m->xDeviceCharacteristics = x_device;
        if (v >= 2) {
            m->xShmMap = x_shm_map;
            m->xShmLock = x_shm_lock;
            m->xShmBarrier = x_shm_barrier;
            m->xShmUnmap = x_shm_unmap;
        }
        if (v >= 3) {
            m->xFetch = x_fetch;
            m->xUnfetch = x_unfetch;
        }
    }
}

static int x_open(sqlite3_vfs *self, const char *name, sqlite3_file *f, int flags, int *out_flags) {
    (void)self;
    noio_file *nf = (noio_file *)f;
    nf->real = (sqlite3_file *)(nf + 1);
    memset(nf->real, 0, (size_t)base->szOsFile);
    f->pMethods = NULL;
    int rc = base->xOpen(base, name, nf->real, flags, out_flags);
    if (nf->real->pMethods) {
        int v = nf->real->pMethods->iVersion;
        f->pMethods = &methods[(v < 1 ? 1 : v > 3 ? 3 : v) - 1];
    }
    return rc;
}

static int x_delete(sqlite3_vfs *s, const char *name, int sync) { (void)s; return base->xDelete(base, name, sync); }
static int x_access(sqlite3_vfs *s, const char *name, int flags, int *out) { (void)s; return base->xAccess(base, name, flags, out); }
static int x_full_pathname(sqlite3_vfs *s, const char *name, int n, char *out) { (void)s; return base->xFullPathname(base, name, n, out); }
static void *x_dlopen(sqlite3_vfs *s, const char *name) { (void)s; return base->xDlOpen(base, name); }
static void x_dlerror(sqlite3_vfs *s, int n, char *msg) { (void)s; base->xDlError(base, n, msg); }
static void (*x_dlsym(sqlite3_vfs *s, void *h, const char *sym))(void) { (void)s; return base->xDlSym(base, h, sym); }
static void x_dlclose(sqlite3_vfs *s, void *h) { (void)s; base->xDlClose(base, h); }
static int x_randomness(sqlite3_vfs *s, int n, char *out) { (void)s; return base->xRandomness(base, n, out); }
static int x_sleep(sqlite3_vfs *s, int us) { (void)s; return base->xSleep(base, us); }
static int x_current_time(sqlite3_vfs *s, double *t) { (void)s; return base->xCurrentTime(base, t); }
static int x_last_error(sqlite3_vfs *s, int n, char *msg) { (void)s; return base->xGetLastError ? base->xGetLastError(base, n, msg) : 0; }
static int x_current_time_int64(sqlite3_vfs *s, sqlite3_int64 *t) { (void)s; return base->xCurrentTimeInt64(base, t); }

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int registered = SQLITE_ERROR;

static void register_once(void) {
    base = sqlite3_vfs_find(NULL);
    if (!base || base->iVersion < 2) return;
    fill_methods();
    memset(&vfs, 0, sizeof vfs);
    vfs.iVersion = 2;
    vfs.szOsFile = (int)sizeof(noio_file) + base->szOsFile;
    vfs.mxPathname = base->mxPathname;
    vfs.zName = mc_sqlite_noio_name;
    vfs.xOpen = x_open;
    vfs.xDelete = x_delete;
    vfs.xAccess = x_access;
    vfs.xFullPathname = x_full_pathname;
    vfs.xDlOpen = x_dlopen;
    vfs.xDlError = x_dlerror;
    vfs.xDlSym = x_dlsym;
    vfs.xDlClose = x_dlclose;
    vfs.xRandomness = x_randomness;
    vfs.xSleep = x_sleep;
    vfs.xCurrentTime = x_current_time;
    vfs.xGetLastError = x_last_error;
    vfs.xCurrentTimeInt64 = x_current_time_int64;
    registered = sqlite3_vfs_register(&vfs, 0);
}

int mc_sqlite_noio_register(void) {
    pthread_once(&once, register_once);
    return registered;
}
