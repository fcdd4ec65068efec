/**
 * Small shared pieces any part may use; util imports no other part.
 *
 * @module
 */
export { AsyncQueue } from './async-queue.js';
export { hugePagesOn, hugePagesSet, onGlibc, runAgainWithHugePages, stopWithParent, withHugePages } from './huge-pages.js';
export { progressBar } from './progress.js';
export { PROJECT_ROOT } from './project-root.js';
export { Ring } from './ring.js';
export { Rng } from './rng.js';
export { UsageError } from './usage-error.js';
