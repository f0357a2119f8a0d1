/* A mapped capture file that shrinks while it is read (another program
 * truncating or rewriting it) turns the next access past the new end into
 * SIGBUS, which would kill the process. As systemd's journal does, the
 * handler maps zero pages over the rest of the mapping and marks it faulted:
 * the faulting load is retried and reads zeros, and the reader, which checks
 * the mark before each record, stops with a warning. A SIGBUS outside every
 * registered mapping goes to the handler that was there before. */
#ifndef SENSOR_SIGBUS_H
#define SENSOR_SIGBUS_H

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SB_SLOTS 64

typedef struct {
    uintptr_t lo, hi;               /* [lo, hi) mapped; 0, 0 when the slot is free */
    volatile sig_atomic_t faulted;
} sb_region;

static sb_region sb_regions[SB_SLOTS];
static struct sigaction sb_previous;

static void sb_handler(int sig, siginfo_t *info, void *ctx)
{
    uintptr_t a = (uintptr_t)info->si_addr, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < SB_SLOTS; i++) {
        sb_region *r = &sb_regions[i];
        if (a >= r->lo && a < r->hi) {
            uintptr_t from = a & ~(page - 1);
            if (mmap((void *)from, r->hi - from, PROT_READ,
                     MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
                r->faulted = 1;
                return;
            }
            break;
        }
    }
    /* not ours: as if we had never been installed */
    sigaction(SIGBUS, &sb_previous, NULL);
    if ((sb_previous.sa_flags & SA_SIGINFO) && sb_previous.sa_sigaction)
        sb_previous.sa_sigaction(sig, info, ctx);
    /* else the faulting instruction runs again under the previous disposition */
}

/* Watch [lo, lo + len): the slot to ask sb_lost about, or -1 when all are taken. */
static int sb_watch(const void *lo, size_t len)
{
    struct sigaction now, ours;
    sigaction(SIGBUS, NULL, &now);
    if (!((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == sb_handler)) {
        /* first use, or someone (faulthandler) installed a handler since */
        memset(&ours, 0, sizeof ours);
        ours.sa_sigaction = sb_handler;
        ours.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&ours.sa_mask);
        sigaction(SIGBUS, &ours, &sb_previous);
    }
    for (int i = 0; i < SB_SLOTS; i++) {
        if (sb_regions[i].hi == 0) {
            sb_regions[i].faulted = 0;
            sb_regions[i].lo = (uintptr_t)lo;
            sb_regions[i].hi = (uintptr_t)lo + len;
            return i;
        }
    }
    return -1;
}

/* Whether the region lost its file, after loading `last` (a byte of it) so
 * that a page gone since shows now rather than later. */
static int sb_lost(int slot, const uint8_t *last)
{
    (void)*(volatile const uint8_t *)last;
    return sb_regions[slot].faulted;
}

static void sb_unwatch(int slot)
{
    sb_regions[slot].lo = sb_regions[slot].hi = 0;
}

#endif
