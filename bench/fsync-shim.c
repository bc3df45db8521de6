/* LD_PRELOAD shim that makes a plain receiver durable like uplink: every file
 * opened for writing is fsync'd before it is closed, and then its folder, so that
 * its new name survives a power cut too; a rename is followed by an fsync of the
 * folder it renamed into. Used to compare dcmtk's storescp with the same guarantee
 * uplink gives (bench/run.py builds it). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int (*real_close)(int);

static void sync_parent(const char *path) {
    char copy[PATH_MAX];
    strncpy(copy, path, sizeof copy - 1);
    copy[sizeof copy - 1] = 0;
    int dir = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (dir >= 0) {
        fsync(dir);
        real_close(dir);
    }
}

/* fsync a regular file open for writing, then its folder. */
static void make_durable(int fd) {
    int flags = fcntl(fd, F_GETFL);
    struct stat st;
    if (flags == -1 || (flags & O_ACCMODE) == O_RDONLY) return;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    fsync(fd);
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    sync_parent(path);
}

int close(int fd) {
    if (!real_close) real_close = dlsym(RTLD_NEXT, "close");
    make_durable(fd);
    return real_close(fd);
}

int fclose(FILE *stream) {
    static int (*real_fclose)(FILE *);
    if (!real_fclose) real_fclose = dlsym(RTLD_NEXT, "fclose");
    if (!real_close) real_close = dlsym(RTLD_NEXT, "close");
    int fd = fileno(stream);
    if (fd >= 0) {
        fflush(stream);
        make_durable(fd);
    }
    return real_fclose(stream);
}

int rename(const char *from, const char *to) {
    static int (*real_rename)(const char *, const char *);
    if (!real_rename) real_rename = dlsym(RTLD_NEXT, "rename");
    if (!real_close) real_close = dlsym(RTLD_NEXT, "close");
    int result = real_rename(from, to);
    if (result == 0) sync_parent(to);
    return result;
}
