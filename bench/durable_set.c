/* The floor of a durable `set`: the same durable work the toolkit does for
 * one, in C, with nothing else. Reads STATE whole, links it into BACKUPS
 * (the backup of the version replaced; the previous floor backup is removed,
 * as pruning would), writes the same bytes to a temp file (O_EXCL, 0600),
 * fdatasyncs it, fsyncs BACKUPS, renames it over STATE, fsyncs STATE's
 * folder and appends one line to AUDIT (O_APPEND, one write).
 * Usage: durable_set STATE BACKUPS AUDIT */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int sync_dir(const char *dir) {
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0 || fsync(d) != 0) { perror(dir); return 1; }
    return close(d);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: durable_set STATE BACKUPS AUDIT\n"); return 1; }
    char tmp[4096], dirbuf[4096], backup[4096], line[512];
    snprintf(tmp, sizeof tmp, "%s.floor.tmp", argv[1]);
    snprintf(dirbuf, sizeof dirbuf, "%s", argv[1]);
    snprintf(backup, sizeof backup, "%s/floor-backup.json", argv[2]);
    int in = open(argv[1], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (in < 0 || fstat(in, &st) != 0) { perror(argv[1]); return 1; }
    char *buf = malloc(st.st_size + 1);
    ssize_t got = 0;
    while (got < st.st_size) {
        ssize_t n = read(in, buf + got, st.st_size - got);
        if (n <= 0) { perror("read"); return 1; }
        got += n;
    }
    close(in);
    unlink(backup);
    if (link(argv[1], backup) != 0) { perror("link"); return 1; }
    int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) { perror(tmp); return 1; }
    if (write(fd, buf, got) != got || fdatasync(fd) != 0) { perror("write"); return 1; }
    close(fd);
    if (sync_dir(argv[2])) return 1;
    if (rename(tmp, argv[1]) != 0) { perror("rename"); return 1; }
    if (sync_dir(dirname(dirbuf))) return 1;
    int a = open(argv[3], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    int len = snprintf(line, sizeof line, "{\"tool\":\"floor\",\"op\":\"set\",\"pid\":%d}\n", (int)getpid());
    if (a < 0 || write(a, line, len) != len) { perror(argv[3]); return 1; }
    close(a);
    return 0;
}
