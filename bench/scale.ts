/**
 * Render benchmark: the program under mocks for 10, 50 and 100 workers, printing time and resource count.
 * Goal: time linear in N, 100 workers in under 10 s. Figures only; nothing here fails on time.
 */
import { render } from "../tools/render";

(async () => {
    // A first render loads the SDK and providers; it is not part of any figure.
    await render({ workerCount: 1 });
    const rows: Array<[number, number, number]> = [];
    for (const workerCount of [10, 50, 100]) {
        const started = process.hrtime.bigint();
        const rendered = await render({ workerCount });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        if (rendered.error) {
            throw rendered.error;
        }
        rows.push([workerCount, rendered.resources.length, seconds]);
    }
    for (const [workers, resources, seconds] of rows) {
        console.log(`workers=${String(workers).padStart(3)}  resources=${String(resources).padStart(4)}  ` +
            `render=${seconds.toFixed(2)} s  per resource=${(1000 * seconds / resources).toFixed(1)} ms`);
    }
})().catch((err) => {
    console.error(err);
    process.exit(1);
});
