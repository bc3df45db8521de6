/* LD_PRELOAD shim that makes a plain receiver durable like uplink: every file
 * opened for writing is fsync'd before it is closed. Used to compare dcmtk's
 * storescp with the same guarantee uplink gives (bench/run.py builds it). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int close(int fd) {
    static int (*real_close)(int);
    if (!real_close) real_close = dlsym(RTLD_NEXT, "close");
    int flags = fcntl(fd, F_GETFL);
    if (flags != -1 && (flags & O_ACCMODE) != O_RDONLY) fsync(fd);
    return real_close(fd);
}

int fclose(FILE *stream) {
    static int (*real_fclose)(FILE *);
    if (!real_fclose) real_fclose = dlsym(RTLD_NEXT, "fclose");
    int fd = fileno(stream);
    if (fd >= 0) {
        int flags = fcntl(fd, F_GETFL);
        if (flags != -1 && (flags & O_ACCMODE) != O_RDONLY) {
            fflush(stream);
            fsync(fd);
        }
    }
    return real_fclose(stream);
}
