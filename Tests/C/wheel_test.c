/* The deadline wheel (CShims/CMicroCore/wheel.c) against a plain model: random arms, cancels and
 * sweeps over a clock the test moves, small steps and jumps past a whole turn of the wheel, with
 * the fire callback cancelling and re-arming entries (as a handler answering a timeout does).
 * Checks that an entry fires once per arming, never before it is due, and never later than the
 * first sweep at or past its tick; that cancelled entries never fire; that the wheel's next wake
 * is never later than its earliest entry; and that the count is right. Built and run by
 * scripts/test with ASan and UBSan. */
#include "../../CShims/CMicroCore/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "wheel_test.c:%d: %s\n", __LINE__, #cond);                                                 \
            if (++failures > 20) exit(1);                                                                              \
        }                                                                                                              \
    } while (0)

#define N 300

typedef struct {
    mc_deadline_t d;
    bool armed; /* the model: armed and not yet fired or cancelled */
    uint64_t due;
    uint64_t at; /* when the wheel said it would find it: its due tick, or the next to sweep */
    unsigned fired;
} entry_t;

static entry_t entries[N];
static mc_wheel_t wheel;
static uint64_t now;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t armed_count(void) {
    size_t n = 0;
    for (size_t i = 0; i < N; i++) n += entries[i].armed;
    return n;
}

static void arm(entry_t *e, uint64_t timeout) {
    uint64_t at = mc_wheel_arm(&wheel, &e->d, now + timeout, now);
    CHECK(at >= now + timeout && at < now + timeout + 2 * MC_WHEEL_TICK_MS);
    e->armed = true;
    e->due = now + timeout;
    e->at = at;
}

static void cancel(entry_t *e) {
    mc_wheel_cancel(&wheel, &e->d);
    e->armed = false;
}

static uint64_t random_timeout(void) {
    switch (next_random() % 4) {
    case 0: return next_random() % 10;                            /* due now or within a tick or two */
    case 1: return next_random() % 200;
    case 2: return 5000;                                          /* the default call timeout */
    default: return next_random() % (3 * MC_WHEEL_SLOTS * MC_WHEEL_TICK_MS); /* turns of the wheel ahead */
    }
}

static void fire(mc_deadline_t *d, void *arg) {
    (void)arg;
    entry_t *e = (entry_t *)((char *)d - offsetof(entry_t, d));
    CHECK(e->armed);          /* cancelled entries never fire */
    CHECK(e->due <= now);     /* never early */
    CHECK(d->pprev == NULL);  /* disarmed before it is handed over */
    e->armed = false;
    e->fired++;
    /* what a timeout's handler may do: answer others, start new calls, re-arm this one */
    switch (next_random() % 8) {
    case 0: cancel(&entries[next_random() % N]); break;
    case 1: {
        entry_t *other = &entries[next_random() % N];
        arm(other, random_timeout());
        break;
    }
    case 2: arm(e, next_random() % 3); break; /* due at once: fires in this sweep or the next tick's */
    default: break;
    }
}

static void sweep(void) {
    uint64_t next = mc_wheel_sweep(&wheel, now, fire, NULL);
    CHECK(wheel.count == armed_count());
    uint64_t last_tick = now / MC_WHEEL_TICK_MS, earliest = 0;
    for (size_t i = 0; i < N; i++) {
        if (!entries[i].armed) continue;
        /* nothing left behind: what is still armed is found by a tick after the one swept last */
        CHECK(entries[i].at / MC_WHEEL_TICK_MS > last_tick);
        if (!earliest || entries[i].at < earliest) earliest = entries[i].at;
    }
    /* the next wake is never after the earliest entry, and there is one while any is armed */
    CHECK((next == 0) == (earliest == 0));
    CHECK(next <= earliest);
}

int main(void) {
    memset(&wheel, 0, sizeof wheel);
    now = 1000000;
    CHECK(mc_wheel_next(&wheel) == 0);

    /* one entry: fires at its tick, not a tick before */
    arm(&entries[0], 10);
    now += 9;
    sweep();
    CHECK(entries[0].fired == 0 && entries[0].armed);
    now += 1 + MC_WHEEL_TICK_MS;
    sweep();
    CHECK(entries[0].fired == 1 && !entries[0].armed);
    CHECK(mc_wheel_next(&wheel) == 0);

    /* a cancelled entry never fires, and its stale slot costs nothing but a scan */
    arm(&entries[1], 50);
    cancel(&entries[1]);
    CHECK(mc_wheel_next(&wheel) == 0);
    now += 100;
    sweep();
    CHECK(entries[1].fired == 0);

    /* many turns ahead: fires once, after every turn has passed */
    arm(&entries[2], 5 * MC_WHEEL_SLOTS * MC_WHEEL_TICK_MS + 7);
    for (int i = 0; i < 5; i++) {
        now += MC_WHEEL_SLOTS * MC_WHEEL_TICK_MS;
        sweep();
        CHECK(entries[2].fired == 0);
    }
    now += 8 + MC_WHEEL_TICK_MS;
    sweep();
    CHECK(entries[2].fired == 1);
    memset(entries, 0, sizeof entries);

    /* random operations against the model */
    for (int op = 0; op < 400000; op++) {
        entry_t *e = &entries[next_random() % N];
        switch (next_random() % 10) {
        case 0: case 1: case 2: case 3: arm(e, random_timeout()); break;
        case 4: case 5: cancel(e); break;
        case 6: case 7: now += next_random() % 7; sweep(); break;
        case 8: now += next_random() % 400; sweep(); break;
        default:
            /* the loop slept through turns of the wheel */
            if (next_random() % 50 == 0) {
                now += next_random() % (4 * MC_WHEEL_SLOTS * MC_WHEEL_TICK_MS);
                sweep();
            }
            break;
        }
    }

    /* disarming all leaves nothing to fire */
    size_t fired = 0;
    for (size_t i = 0; i < N; i++) fired += entries[i].fired;
    CHECK(fired > 1000);
    mc_wheel_disarm_all(&wheel);
    for (size_t i = 0; i < N; i++) {
        CHECK(entries[i].d.pprev == NULL);
        entries[i].armed = false;
    }
    CHECK(wheel.count == 0 && mc_wheel_next(&wheel) == 0);
    now += 100000;
    sweep();
    mc_wheel_free(&wheel);

    if (failures) {
        fprintf(stderr, "wheel_test: %d failures\n", failures);
        return 1;
    }
    printf("wheel_test: ok (%zu deadlines fired)\n", fired);
    return 0;
}
