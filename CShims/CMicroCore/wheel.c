/*
 * A hashed timing wheel: the deadlines of one loop's calls.
 *
 * Nearly every deadline is cancelled long before it passes (the call answers in microseconds,
 * the deadline is seconds away), so arming and cancelling must cost next to nothing, and passing
 * may cost a little more. An entry lives in the list of the slot its due tick hashes to; arming
 * pushes it on that list and cancelling unlinks it, both O(1), with no allocation (the entry is
 * part of its request) and no system timer touched unless it falls due before every other entry.
 * The loop's one timer wakes at the first slot that holds entries; a sweep takes off those due and
 * leaves those of later rounds. A slot's bit in `bits` says it may hold entries: bits are set on
 * arming and cleared lazily, when a scan finds the slot empty, so cancelling never scans.
 *
 * Loop thread only. No libuv in here (the loop's glue is in loop.c), so that the wheel can be
 * tested on its own with a clock the test moves (Tests/C/wheel_test.c).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define MASK (MC_WHEEL_SLOTS - 1)

/* The tick whose sweep finds an entry due at `due`: the first tick at or after it. */
static uint64_t tick_of(uint64_t due) { return (due + MC_WHEEL_TICK_MS - 1) / MC_WHEEL_TICK_MS; }

static void set_bit(mc_wheel_t *w, size_t slot) { w->bits[slot / 64] |= (uint64_t)1 << (slot % 64); }
static void clear_bit(mc_wheel_t *w, size_t slot) { w->bits[slot / 64] &= ~((uint64_t)1 << (slot % 64)); }
static bool has_bit(const mc_wheel_t *w, size_t slot) { return (w->bits[slot / 64] >> (slot % 64)) & 1; }

static void push(mc_deadline_t **head, mc_deadline_t *d) {
    d->next = *head;
    if (d->next) d->next->pprev = &d->next;
    d->pprev = head;
    *head = d;
}

static void unlink_entry(mc_deadline_t *d) {
    *d->pprev = d->next;
    if (d->next) d->next->pprev = d->pprev;
    d->next = NULL;
    d->pprev = NULL;
}

uint64_t mc_wheel_arm(mc_wheel_t *w, mc_deadline_t *d, uint64_t due, uint64_t now) {
    if (!w->slots) {
        w->slots = calloc(MC_WHEEL_SLOTS, sizeof *w->slots);
        if (!w->slots) return 0;
    }
    if (d->pprev) mc_wheel_cancel(w, d);
    /* nothing pending: no tick before now needs a sweep */
    if (w->count == 0) w->cursor = now / MC_WHEEL_TICK_MS;
    uint64_t tick = tick_of(due);
    if (tick <= w->cursor) tick = w->cursor + 1; /* a tick swept already: the next one */
    size_t slot = (size_t)(tick & MASK);
    d->due = due;
    push(&w->slots[slot], d);
    set_bit(w, slot);
    w->count++;
    return tick * MC_WHEEL_TICK_MS;
}

void mc_wheel_cancel(mc_wheel_t *w, mc_deadline_t *d) {
    if (!d->pprev) return;
    unlink_entry(d);
    w->count--;
}

uint64_t mc_wheel_next(mc_wheel_t *w) {
    if (w->count == 0) return 0;
    for (uint64_t tick = w->cursor + 1; tick <= w->cursor + MC_WHEEL_SLOTS; tick++) {
        size_t slot = (size_t)(tick & MASK);
        if (!has_bit(w, slot)) {
            /* a whole word of empty slots at once */
            if (slot % 64 == 0 && w->bits[slot / 64] == 0) tick += 63;
            continue;
        }
        if (w->slots[slot]) return tick * MC_WHEEL_TICK_MS;
        clear_bit(w, slot); /* every entry it had was cancelled */
    }
    /* unreachable while count is right: every entry is in a slot whose bit is set */
    return (w->cursor + MC_WHEEL_SLOTS) * MC_WHEEL_TICK_MS;
}

uint64_t mc_wheel_sweep(mc_wheel_t *w, uint64_t now, mc_wheel_fire_fn fire, void *arg) {
    uint64_t last = now / MC_WHEEL_TICK_MS, first = w->cursor + 1;
    /* a loop that slept through more than a turn of the wheel sweeps every slot once */
    if (last >= first + MC_WHEEL_SLOTS) first = last - MC_WHEEL_SLOTS + 1;
    for (uint64_t tick = first; tick <= last && w->count > 0; tick++) {
        w->cursor = tick; /* entries armed by `fire` land after the tick being swept */
        size_t slot = (size_t)(tick & MASK);
        if (!has_bit(w, slot)) continue;
        clear_bit(w, slot);
        /* the slot's entries move to a list of their own: `fire` may cancel or arm any entry,
         * this slot's included, and unlinking needs no head */
        mc_deadline_t *taken = w->slots[slot];
        w->slots[slot] = NULL;
        if (taken) taken->pprev = &taken;
        while (taken) {
            mc_deadline_t *d = taken;
            unlink_entry(d);
            if (d->due <= now) {
                w->count--;
                fire(d, arg);
            } else {
                /* a later turn of the wheel: back in its slot */
                push(&w->slots[slot], d);
                set_bit(w, slot);
            }
        }
    }
    if (last > w->cursor) w->cursor = last;
    return mc_wheel_next(w);
}

void mc_wheel_disarm_all(mc_wheel_t *w) {
    if (!w->slots) return;
    for (size_t slot = 0; slot < MC_WHEEL_SLOTS; slot++) {
        while (w->slots[slot]) unlink_entry(w->slots[slot]);
    }
    memset(w->bits, 0, sizeof w->bits);
    w->count = 0;
}

void mc_wheel_free(mc_wheel_t *w) {
    mc_wheel_disarm_all(w);
    free(w->slots);
    w->slots = NULL;
}
