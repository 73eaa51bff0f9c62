/* The durable-write floor: what any correct atomic update of a small file
 * costs at least. Writes 4 KiB to a new temp file (O_EXCL, 0600), fdatasyncs
 * it, renames it over the target and fsyncs the folder. Usage: durable_write FILE */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: durable_write FILE\n"); return 1; }
    char tmp[4096], dirbuf[4096], buf[4096];
    snprintf(tmp, sizeof tmp, "%s.floor.tmp", argv[1]);
    snprintf(dirbuf, sizeof dirbuf, "%s", argv[1]);
    memset(buf, 'x', sizeof buf);
    int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) { perror(tmp); return 1; }
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) != 0) { perror("write"); return 1; }
    close(fd);
    if (rename(tmp, argv[1]) != 0) { perror("rename"); return 1; }
    int d = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0 || fsync(d) != 0) { perror("fsync dir"); return 1; }
    close(d);
    return 0;
}
