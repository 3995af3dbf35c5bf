/* The floor of a limit update as a whole process: open a cgroup file, write a value, close it.
 * Usage: rawwrite FILE VALUE */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    int fd = open(argv[1], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, argv[2], strlen(argv[2])) < 0)
        return 1;
    return close(fd) < 0;
}
