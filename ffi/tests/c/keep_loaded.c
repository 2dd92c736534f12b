/*
 * Linked into the AddressSanitizer builds of the C tests only. The Vulkan
 * loader unloads the driver (lavapipe, with LLVM) when the last instance
 * goes; LeakSanitizer then reports the blocks only the driver's globals
 * pointed at as leaks of "<unknown module>". Keeping every library loaded
 * lets it see those globals, so a leak it reports is a real one.
 */
int dlclose(void *handle);

int dlclose(void *handle) {
    (void)handle;
    return 0;
}
