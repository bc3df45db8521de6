/* The machine's limit for durable receiving, the floor any storage SCP that
 * promises durability stands on: instances arrive over loopback TCP (an 8-byte
 * big-endian length, then the bytes), each goes into its own file whose name was
 * made durable beforehand, its pages handed to the disk as they arrive
 * (sync_file_range, as uplink does), one fsync, then a one-byte answer. No DICOM,
 * no parsing: only the network, the copy and the flush. bench/run.py builds it.
 *
 *     limit DIR COUNT CONNECTIONS   (prints the port, then serves COUNT instances)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *dir;
static int listener;
static int next_slot;
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;

static int read_all(int fd, void *buf, size_t len) {
    for (size_t done = 0; done < len;) {
        ssize_t n = recv(fd, (char *)buf + done, len - done, 0);
        if (n <= 0) return -1;
        done += n;
    }
    return 0;
}

static void *serve(void *arg) {
    (void)arg;
    int conn = accept(listener, NULL, NULL);
    static __thread char buf[1 << 20];
    uint64_t be;
    while (read_all(conn, &be, 8) == 0) {
        uint64_t want = be64toh(be), written = 0, kicked = 0;
        pthread_mutex_lock(&slot_lock);
        int slot = next_slot++;
        pthread_mutex_unlock(&slot_lock);
        char path[4096];
        snprintf(path, sizeof path, "%s/%06d", dir, slot);
        int out = open(path, O_WRONLY);
        if (out < 0) { perror(path); exit(1); }
        while (written < want) {
            size_t ask = want - written < sizeof buf ? want - written : sizeof buf;
            ssize_t n = recv(conn, buf, ask, 0);
            if (n <= 0 || write(out, buf, n) != n) { perror("receive"); exit(1); }
            written += n;
            if (written - kicked >= 256 * 1024) {
                sync_file_range(out, kicked, written - kicked, SYNC_FILE_RANGE_WRITE);
                kicked = written;
            }
        }
        if (fsync(out) != 0) { perror("fsync"); exit(1); }
        close(out);
        if (send(conn, "k", 1, 0) != 1) break;
    }
    close(conn);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: limit DIR COUNT CONNECTIONS\n"); return 2; }
    dir = argv[1];
    int count = atoi(argv[2]), connections = atoi(argv[3]);
    for (int i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%06d", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { perror(path); return 1; }
        close(fd);
    }
    int d = open(dir, O_RDONLY);
    fsync(d);
    close(d);
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, len) || listen(listener, connections)) { perror("listen"); return 1; }
    getsockname(listener, (struct sockaddr *)&addr, &len);
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    pthread_t threads[64];
    for (int i = 0; i < connections && i < 64; i++) pthread_create(&threads[i], NULL, serve, NULL);
    for (int i = 0; i < connections && i < 64; i++) pthread_join(threads[i], NULL);
    return 0;
}
