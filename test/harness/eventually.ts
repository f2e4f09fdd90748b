/**
 * Polls an eventually-consistent condition with a bound. Ray's views (the GCS node table, `ray status`, process
 * lists after a stop) catch up seconds apart, so a test never asserts one snapshot of them.
 */
export interface EventuallyOptions {
    /** What is awaited, for the timeout message. */
    what: string;
    /** Bound on the whole wait, in seconds. */
    timeoutSeconds: number;
    /** Pause between tries, in seconds. */
    intervalSeconds?: number;
}

/**
 * Calls `probe` until it returns a value other than undefined, and returns that value. On timeout it throws,
 * naming what was awaited and the last state the probe reported through `last`.
 */
export async function eventually<T>(
    options: EventuallyOptions,
    probe: (last: (state: string) => void) => Promise<T | undefined>,
): Promise<T> {
    const deadline = Date.now() + options.timeoutSeconds * 1000;
    let lastState = "no answer yet";
    const note = (state: string) => { lastState = state; };
    for (;;) {
        try {
            const value = await probe(note);
            if (value !== undefined) {
                return value;
            }
        } catch (e) {
            lastState = (e as Error).message;
        }
        if (Date.now() >= deadline) {
            throw new Error(`${options.what}: not within ${options.timeoutSeconds}s; last seen: ${lastState}`);
        }
        await new Promise((resolve) => setTimeout(resolve, (options.intervalSeconds ?? 2) * 1000));
    }
}
