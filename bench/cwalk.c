/* cwalk: the floor any pcap reader pays. Reads the file in big windows and walks
 * the record headers (count packets, sum caplen) without looking at a payload.
 * Prints {"packets": N, "bytes": SUM_CAPLEN} on stdout.
 *
 * build: cc -O2 -o cwalk cwalk.c      usage: cwalk CAPTURE.pcap
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WINDOW (4u << 20)

static unsigned char buf[WINDOW];

static uint32_t get32(const unsigned char *p, int swap)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: cwalk CAPTURE.pcap\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    unsigned char gh[24];
    if (read(fd, gh, sizeof gh) != sizeof gh) {
        fprintf(stderr, "cwalk: short pcap header\n");
        return 1;
    }
    uint32_t magic;
    memcpy(&magic, gh, 4);
    int swap;
    if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d)      /* µs or ns timestamps, our byte order */
        swap = 0;
    else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1)
        swap = 1;
    else {
        fprintf(stderr, "cwalk: not a pcap file (pcapng is not supported)\n");
        return 1;
    }

    uint64_t packets = 0, bytes = 0, skip = 0;  /* skip: payload bytes still to pass over */
    size_t have = 0, pos = 0;
    ssize_t r;
    while ((r = read(fd, buf + have, WINDOW - have)) > 0) {
        have += (size_t)r;
        for (;;) {
            if (skip) {
                size_t k = have - pos < skip ? have - pos : (size_t)skip;
                pos += k;
                skip -= k;
                if (skip)
                    break;
            }
            if (have - pos < 16)
                break;
            uint32_t caplen = get32(buf + pos + 8, swap);  /* ts_sec, ts_frac, caplen, len */
            packets++;
            bytes += caplen;
            skip = caplen;
            pos += 16;
        }
        memmove(buf, buf + pos, have - pos);  /* keep a partial record header */
        have -= pos;
        pos = 0;
    }
    if (r < 0) {
        perror("read");
        return 1;
    }
    if (have || skip)
        fprintf(stderr, "cwalk: capture ends inside a record\n");
    printf("{\"packets\": %llu, \"bytes\": %llu}\n", (unsigned long long)packets, (unsigned long long)bytes);
    close(fd);
    return 0;
}
