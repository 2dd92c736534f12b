/* Runs a test's main on a thread with a 128 KiB stack: the default stack
 * of a thread a C program makes on musl (Alpine Linux), where every call
 * into the library has to fit. Built with the test's main renamed
 * (-Dmain=tessera_test_main; as C++ for the C++ test); -DSTACK_KIB=N
 * gives another size.
 *
 * The stack is this file's own memory, below it a page no one may touch
 * (an overflow faults there), filled with a pattern before the thread
 * starts: once the test has run, the deepest byte no longer holding the
 * pattern is how much of the stack the test used (the thread's descriptor
 * and TLS included, which glibc and musl keep at its top), printed as
 * "stack peak: N bytes of M". */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef STACK_KIB
#define STACK_KIB 128
#endif
#define STACK_BYTES ((size_t)STACK_KIB * 1024)
#define PAINT 0xA5

int tessera_test_main(void);

static int result = 1;

static void *run(void *arg) {
    (void)arg;
    result = tessera_test_main();
    return NULL;
}

int main(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *mapped = mmap(NULL, STACK_BYTES + page, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *map = (unsigned char *)mapped;
    if (mapped == MAP_FAILED || mprotect(map, page, PROT_NONE) != 0) {
        fprintf(stderr, "small_stack: cannot map a %d KiB stack\n", STACK_KIB);
        return 1;
    }
    unsigned char *stack = map + page;
    memset(stack, PAINT, STACK_BYTES);
    pthread_attr_t attr;
    pthread_t thread;
    if (pthread_attr_init(&attr) != 0 ||
        pthread_attr_setstack(&attr, stack, STACK_BYTES) != 0 ||
        pthread_create(&thread, &attr, run, NULL) != 0 ||
        pthread_join(thread, NULL) != 0) {
        fprintf(stderr, "small_stack: cannot run the test on a %d KiB thread\n", STACK_KIB);
        return 1;
    }
    pthread_attr_destroy(&attr);
    size_t untouched = 0;
    while (untouched < STACK_BYTES && stack[untouched] == PAINT) {
        untouched++;
    }
    printf("stack peak: %zu bytes of %zu\n", STACK_BYTES - untouched, STACK_BYTES);
    munmap(map, STACK_BYTES + page);
    return result;
}
