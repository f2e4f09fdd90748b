/** What every benchmark reports of its rounds: the median and the spread, never one run's figure alone. */

export const median = (values: number[]): number => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/** "median 12.3 s, spread 11.0–14.1 s" */
export const summary = (values: number[]): string =>
    `median ${median(values).toFixed(1)} s, spread ${Math.min(...values).toFixed(1)}–${Math.max(...values).toFixed(1)} s`;
