/* Runs a test's main on a thread with a 128 KiB stack: the default stack
 * of a thread a C program makes on musl (Alpine Linux), where every call
 * into the library has to fit. Built with the test's main renamed
 * (-Dmain=tessera_test_main; as C++ for the C++ test). */
#include <pthread.h>
#include <stdio.h>

#define SMALL_STACK (128 * 1024)

int tessera_test_main(void);

static int result = 1;

static void *run(void *arg) {
    (void)arg;
    result = tessera_test_main();
    return NULL;
}

int main(void) {
    pthread_attr_t attr;
    pthread_t thread;
    if (pthread_attr_init(&attr) != 0 ||
        pthread_attr_setstacksize(&attr, SMALL_STACK) != 0 ||
        pthread_create(&thread, &attr, run, NULL) != 0 ||
        pthread_join(thread, NULL) != 0) {
        fprintf(stderr, "small_stack: cannot run the test on a %d KiB thread\n",
                SMALL_STACK / 1024);
        return 1;
    }
    pthread_attr_destroy(&attr);
    return result;
}
