/**
 * One benchmark experiment as an SVG line chart: the setting on x (its values evenly spaced, as the
 * seed's tables list them), sentences per second on y from zero. Hand-written rather than a charting
 * library: one chart type, no fonts or DOM to load, and the output is a plain file a README can embed.
 */

export interface PlotSeries {
  name: string;
  /** One y per x label; `undefined` where the point could not be measured (a gap in the line). */
  values: Array<number | undefined>;
}

export interface PlotInput {
  title: string;
  xLabel: string;
  yLabel: string;
  /** The setting's values, in order. */
  x: string[];
  series: PlotSeries[];
  /** Lines under the title: the model, the settings kept fixed. */
  subtitle?: string[];
}

const WIDTH = 640;
const HEIGHT = 400;
const MARGIN = { left: 72, right: 24, top: 80, bottom: 56 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A round upper bound and step for the y axis: 0 … 1, 2 or 5 × 10^k, four to eight ticks. */
export function niceAxis(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const rough = max / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough)!;
  return { top: Math.ceil(max / step) * step, step };
}

function tickLabel(v: number): string {
  if (v >= 1000) return `${Number((v / 1000).toFixed(1))}k`;
  return String(Number(v.toFixed(2)));
}

export function lineChartSvg(input: PlotInput): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const ys = input.series.flatMap((s) => s.values.filter((v): v is number => v !== undefined && Number.isFinite(v)));
  const { top, step } = niceAxis(Math.max(0, ...ys));
  const xAt = (i: number) => MARGIN.left + (input.x.length === 1 ? plotW / 2 : (i * plotW) / (input.x.length - 1));
  const yAt = (v: number) => MARGIN.top + plotH - (v / top) * plotH;
  const f = (n: number) => n.toFixed(1);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(input.title)}</text>`,
  );
  (input.subtitle ?? []).forEach((line, i) => {
    out.push(`<text x="${WIDTH / 2}" y="${42 + i * 15}" text-anchor="middle" fill="#555">${escapeXml(line)}</text>`);
  });
  // y grid and ticks
  for (let v = 0; v <= top + step / 2; v += step) {
    const y = f(yAt(v));
    out.push(
      `<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y}" y2="${y}" stroke="#e0e0e0"/>`,
      `<text x="${MARGIN.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${tickLabel(v)}</text>`,
    );
  }
  // x ticks
  input.x.forEach((label, i) => {
    out.push(`<text x="${f(xAt(i))}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${escapeXml(label)}</text>`);
  });
  out.push(
    `<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${MARGIN.top + plotH}" y2="${MARGIN.top + plotH}" stroke="#333"/>`,
    `<line x1="${MARGIN.left}" x2="${MARGIN.left}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#333"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 12}" text-anchor="middle">${escapeXml(input.xLabel)}</text>`,
    `<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(input.yLabel)}</text>`,
  );
  input.series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length]!;
    // Gaps split the line into runs of measured points.
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1)
        out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${run.join(' ')}"/>`);
      run = [];
    };
    s.values.forEach((v, i) => {
      if (v === undefined || !Number.isFinite(v)) {
        flush();
        return;
      }
      const [x, y] = [f(xAt(i)), f(yAt(v))];
      run.push(`${x},${y}`);
      out.push(
        `<circle cx="${x}" cy="${y}" r="3" fill="${color}"><title>${escapeXml(`${s.name}: ${input.x[i]} → ${tickLabel(v)}`)}</title></circle>`,
      );
    });
    flush();
    if (input.series.length > 1) {
      const ly = MARGIN.top + 4 + k * 16;
      out.push(
        `<line x1="${WIDTH - MARGIN.right - 150}" x2="${WIDTH - MARGIN.right - 130}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
        `<text x="${WIDTH - MARGIN.right - 124}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text>`,
      );
    }
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
