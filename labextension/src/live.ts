/**
 * The live figures of a kernel now: its latest answer, carried forward between
 * answers. Pure: no DOM, no JupyterLab, so the status item, its popup and the running
 * cell's footer show the same power, progress and time left at the same moment.
 */
import { IKernelFigures, IPrediction, readPrediction } from './schema';

/** A kernel's figures as of now. */
export interface ILiveFigures {
  figures: IKernelFigures;
  /** Seconds since the heartbeat these figures come from (server clock, carried on). */
  ageS: number;
  /** Whether a cell runs (the latest heartbeat names one). */
  running: boolean;
  /** The running cell's prediction carried forward to now, or null. */
  prediction: IPrediction | null;
  /** Seconds the running cell has run, or null. */
  runningForS: number | null;
}

/**
 * `prediction` (made `elapsedS` seconds ago) carried forward to now at its own pace:
 * the time left counts down, and the fraction done grows as that time is used up
 * (never to 100%: the cell's end says when it is done).
 */
export function predictionNow(
  prediction: IPrediction,
  elapsedS: number
): IPrediction {
  const elapsed = Math.max(0, elapsedS);
  const left = Math.max(0, prediction.eta_s - elapsed);
  let fraction = prediction.fraction;
  if (prediction.eta_s > 0) {
    const used = Math.min(1, elapsed / prediction.eta_s);
    fraction = Math.min(0.99, fraction + (1 - fraction) * used);
  }
  return {
    ...prediction,
    fraction: Math.max(prediction.fraction, fraction),
    eta_s: left
  };
}

/**
 * The live figures of `figures`, answered `sinceAnswerS` seconds ago (browser clock):
 * ages and the running cell's time are the server's, plus the time since its answer,
 * so the two clocks need not agree.
 */
export function liveFigures(
  figures: IKernelFigures,
  sinceAnswerS: number
): ILiveFigures {
  const since = Math.max(0, sinceAnswerS);
  const beatAgeS = figures.heartbeat
    ? Math.max(0, figures.now - figures.heartbeat.at) + since
    : figures.age_s + since;
  const heartbeat = figures.heartbeat;
  const running =
    figures.tracker_state === 'running' && Boolean(heartbeat?.running_cell);
  const prediction = running ? readPrediction(figures.prediction) : null;
  const startedAt = heartbeat?.running_cell_started_at ?? null;
  return {
    figures,
    ageS: beatAgeS,
    running,
    prediction: prediction ? predictionNow(prediction, beatAgeS) : null,
    runningForS:
      running && startedAt !== null
        ? Math.max(0, figures.now - startedAt) + since
        : null
  };
}
