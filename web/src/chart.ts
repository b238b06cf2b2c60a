// A small uPlot line chart as a preact component: made once, fed new data.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from './html.js';

const COLORS = ['#2f6fdf', '#d9480f', '#2b8a3e', '#9c36b5', '#e67700', '#0c8599'];

export interface Series {
  label: string;
  values: (number | null)[];
}

export function Chart(p: { title: string; unit: string; times: number[]; series: Series[]; testid: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const labels = p.series.map((s) => s.label).join('\u0000');
  useEffect(() => {
    if (box.current === null) return;
    const opts: uPlot.Options = {
      width: Math.max(280, Math.min(560, box.current.clientWidth || 480)),
      height: 160,
      title: p.title,
      scales: { x: { time: true } },
      axes: [{}, { label: p.unit, size: 50 }],
      series: [{}, ...p.series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length]!, width: 1.5, spanGaps: false }))],
    };
    plot.current = new uPlot(opts, [p.times.map((t) => t / 1000), ...p.series.map((s) => s.values)] as uPlot.AlignedData, box.current);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, [labels]);
  useEffect(() => {
    plot.current?.setData([p.times.map((t) => t / 1000), ...p.series.map((s) => s.values)] as uPlot.AlignedData);
  }, [p.times, p.series]);
  return html`<div class="chart" data-testid=${p.testid} ref=${box}></div>`;
}
