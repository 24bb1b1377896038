// Reads training progress out of a SimpleTuner-style log, line by line, for the loss and
// learning-rate charts. Feed it text as it arrives; it keeps the unfinished last line.
//   Epoch 1/5, Steps:  10%|█         | 10/100 [00:16<02:24, lr=0.0001, step_loss=0.1542]
//   Training step 4/5 loss=0.2 lr=0.0001

const NUMBER = "[-+]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][-+]?\\d+)?";
const BAR = /\|[^|]*\|\s*(\d+)\/(\d+)\b(.*)$/;
const PLAIN = /\bsteps?\b\s*[:=#]?\s*(\d+)\s*(?:\/|\bof\b)\s*(\d+)\b/i;
const LOSS = new RegExp(`\\b(step_loss|avg_loss|train_loss|loss)['"]?\\s*[=:]\\s*(${NUMBER})`, "g");
const LR = new RegExp(`\\b(?:lr|learning[ _]rate)['"]?\\s*[=:]\\s*(${NUMBER})`, "i");
const TRAINING_DESC = /\b(?:steps?|epoch|training|train)\b/i;

function lossOf(text) {
  let best = null;
  let preferred = false;
  for (const match of text.matchAll(LOSS)) {
    const value = Number(match[2]);
    if (!Number.isFinite(value)) continue;
    const isStep = match[1] === "step_loss";
    if (isStep || !preferred) {
      best = value;
      preferred = preferred || isStep;
    }
  }
  return best;
}

export function parseLine(line) {
  if (!line || line.indexOf("/") < 0) return null;
  let step = null;
  let total = null;
  const bar = line.includes("|") ? BAR.exec(line) : null;
  if (bar) {
    const desc = line.slice(0, bar.index);
    if (!TRAINING_DESC.test(desc) && !/loss/.test(bar[3])) return null;
    step = Number(bar[1]);
    total = Number(bar[2]);
  } else {
    const plain = PLAIN.exec(line);
    if (!plain || /optimi[sz]ation/i.test(line)) return null;
    step = Number(plain[1]);
    total = Number(plain[2]);
  }
  if (!total) return null;
  const loss = lossOf(line);
  const lrMatch = LR.exec(line);
  const lr = lrMatch ? Number(lrMatch[1]) : null;
  if (loss === null && lr === null) return null;
  return { step, total, loss, lr: Number.isFinite(lr) ? lr : null };
}

export class ProgressSeries {
  constructor() {
    this.partial = "";
    this.byStep = new Map();
  }
  push(text) {
    const lines = (this.partial + text).split(/\r\n|\r|\n/);
    this.partial = lines.pop();
    let changed = false;
    for (const line of lines) {
      const point = parseLine(line);
      if (point) {
        this.byStep.set(point.step, point);
        changed = true;
      }
    }
    return changed;
  }
  points() {
    const all = [...this.byStep.values()];
    const tail = this.partial ? parseLine(this.partial) : null;
    if (tail) all.push(tail);
    return all.sort((a, b) => a.step - b.step);
  }
}
