/**
 * The kernel machine's GPUs as one line of text for the popup's GPU row:
 * `210 W (measured) · NVIDIA H200 ×2` (pure: no JupyterLab imports).
 */
import { formatWatts } from './format';
import { IGpu, IKernelFigures } from './schema';

const VENDOR_NAMES: Record<string, string> = {
  nvidia: 'NVIDIA',
  amd: 'AMD',
  apple: 'Apple'
};

/** The vendor's name as its products are sold: `NVIDIA`, `AMD`, `Apple`, else as sent. */
export function vendorName(vendor: string): string {
  return VENDOR_NAMES[vendor.toLowerCase()] ?? vendor;
}

/** The model, led by its vendor's name unless it already starts with it. */
export function gpuName(gpu: IGpu): string {
  const vendor = vendorName(gpu.vendor);
  const model = gpu.model.trim();
  if (!vendor || model.toLowerCase().startsWith(vendor.toLowerCase())) {
    return model;
  }
  return model ? `${vendor} ${model}` : vendor;
}

/**
 * One entry per vendor and model, counted, in device-key order:
 * `NVIDIA H200 ×2 · AMD Instinct MI300X`; `''` without GPUs.
 */
export function gpusText(gpus: Record<string, IGpu>): string {
  const counts = new Map<string, number>();
  for (const key of Object.keys(gpus).sort()) {
    const name = gpuName(gpus[key]);
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts]
    .map(([name, count]) => (count > 1 ? `${name} ×${count}` : name))
    .join(' · ');
}

/**
 * The popup's GPU row: watts now, how they are obtained, and which GPUs
 * (`210 W (measured) · NVIDIA H200 ×2`); `null` where the machine has no GPU.
 */
export function gpuRowText(figures: IKernelFigures): string | null {
  const method = figures.session.methods.gpu;
  const gpus = gpusText(figures.session.gpus);
  if (!method && !gpus) {
    return null;
  }
  return (
    formatWatts(figures.power_w.gpu) +
    (method ? ` (${method})` : '') +
    (gpus ? ` · ${gpus}` : '')
  );
}
