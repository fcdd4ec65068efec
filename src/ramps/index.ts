/**
 * Trained ramps (Apparate §3.1): distils one small map per candidate layer
 * on the model's own continuations, with the backbone frozen, and decides
 * when compiling a model trains them. Above the model (it compiles and runs
 * it), the engine's sampler and the exits' confidence; below the CLI and
 * the server, which hand `rampTrainer` to model resolution.
 *
 * @module
 */
import { readManifest, type Manifest, type RampTrainer } from '../model/index.js';
import { estimateTrainingSeconds, trainRamps, untrainableReason, type TrainRampsOptions } from './train.js';

export { candidatesByFrequency, formatRampReport, trainRamps, TRAIN_RAMPS_DEFAULTS, type TrainRampsOptions } from './train.js';

/** 'auto' trains the ramps when the estimate is under this (stories260K: about 20-40 s on 2 shared cores). */
const AUTO_TRAIN_SECONDS = 120;

/**
 * The trainer compiling a model uses (see TrainRampsMode): 'on' trains;
 * 'auto' trains unless the head cannot be trained or training would take
 * longer than AUTO_TRAIN_SECONDS, and then says why and what to run later.
 */
export function rampTrainer(training: Partial<TrainRampsOptions> = {}): RampTrainer {
  return async (dir, { mode, finalDir, log }): Promise<Manifest> => {
    const manifest = readManifest(dir);
    const untrainable = untrainableReason(manifest);
    const estimate = estimateTrainingSeconds(manifest.config, training);
    if (mode === 'auto' && untrainable) {
      log(`ramps left untrained (plain head): ${untrainable}`);
      return manifest;
    }
    if (mode === 'auto' && estimate > AUTO_TRAIN_SECONDS) {
      log(`ramps left untrained (plain head): training them would take about ${Math.ceil(estimate / 60)} min; run \`offramp train-ramps ${finalDir}\``);
      return manifest;
    }
    log(`training the ramps (about ${Math.ceil(estimate)} s)`);
    await trainRamps(dir, training);
    return readManifest(dir);
  };
}
