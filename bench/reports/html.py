"""One self-contained HTML report: leaderboards, figures, galleries and provenance.

Figures are embedded as base64 PNG and the style sheet is inline, so the file
opens offline, attached to an e-mail or a paper's supplementary material. No
JavaScript. Everything is built in memory first; the file is written at the end.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from bench.errors import UsageError
from bench.files import slug, write_texts
from bench.noise import levels
from bench.registry import Registry
from bench.reports import cost_columns, figures, rendering, sample_sections, tables
from bench.reports.html_parts import Section, html_table, image, plain_table, save_figure
from bench.store.database import Store

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e3e3e3; }
thead th { border-bottom: 2px solid #444; background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: .85em; }
details summary { cursor: pointer; margin: .5em 0; }
code { background: #f3f3f3; padding: 0 .2em; }
"""


def provenance_section(store: Store, prov: dict) -> Section:
    runs = pd.DataFrame([{
        "run": r["run_id"], "started": r["started"], "finished": r["finished"], "status": r["status"],
        "device": r["device"], "seed": r["seed"], "protocol": r["protocol"],
        **{name: r["versions"].get(name) for name in rendering.HEADER_LIBRARIES},
        "plugins": ", ".join(f"{k} {v}" for k, v in (r["versions"].get("plugins") or {}).items()),
        "command": " ".join(r["argv"][1:]),
    } for r in prov["runs"]])
    lines = "<br>".join(html.escape(line) for line in rendering.provenance_lines(prov))
    return Section("Provenance", [f'<p class="note">{lines}</p>', plain_table(runs)])


def gallery_choices(store: Store, per_level: int) -> pd.DataFrame:
    """(dataset, noise, level, repetition, image_id) with saved outputs: the first images per level."""
    saved = figures.saved_outputs(store)
    if saved.empty:
        return saved
    saved = saved[saved["repetition"] == saved["repetition"].min()]
    keys = ["dataset", "noise", "level", "repetition"]
    picks = saved.drop_duplicates(keys + ["image_id"])[keys + ["image_id"]]
    return picks.groupby(keys, sort=False).head(per_level).sort_values(["dataset", "noise", "level"])


def build(store: Store, registry: Registry, metrics: list[str] | None = None, galleries: int = 1,
          figures_dir: str | Path | None = None) -> str:
    """The report's HTML. UsageError when the store has nothing to show or a metric is unknown."""
    has_denoiser_scores = not tables.latest_done_cells(store).empty
    if metrics and not has_denoiser_scores:  # sampler metrics all show in the samplers table anyway
        raise UsageError(f"--metric chooses denoiser scores and {store.path} has no done denoiser cell "
                         "(sampler metrics all show without it)")
    metrics = list(dict.fromkeys(metrics or tables.default_metrics(store)))
    ranked = bool(metrics) and has_denoiser_scores
    for metric in metrics if ranked else []:
        tables.check_metric(store, metric)  # before any figure is written to figures_dir
    study = sample_sections.sections(store, registry, figures_dir)
    prov = tables.provenance(store)
    if not ranked:  # samplers only, or real noisy images without references (their galleries)
        unscored = [] if figures.saved_outputs(store).empty else [
            gallery_section(store, registry, (metrics or list(tables.WIDE_METRICS))[0], galleries, figures_dir)]
        if not study and not unscored:
            raise UsageError(f"no scores in {store.path}; run `denoise-bench run` first")
        return page(f"denoise-bench report: {store.path.name}", [*unscored, *study, provenance_section(store, prov)],
                    prov)
    longs = {m: tables.leaderboard(store, m) for m in metrics}
    sections = []

    summary = pd.concat([tables.ranking_summary(store, m) for m in metrics], ignore_index=True)
    if cost_columns.measured(store):  # parameters, GMACs and latency at 256x256 beside the ranks
        summary = cost_columns.add(summary, store, "summary")
    sections.append(Section("Ranking", [
        '<p class="note">Mean rank of each denoiser over every (dataset, noise, level) it ran; '
        "<code>mean_rank_tied</code> counts a denoiser as tied with those a paired t-test over "
        "images cannot tell apart (Holm-corrected within each group, family-wise 5%).</p>",
        html_table(summary)]))

    wide = tables.wide(store, metrics)
    sections.append(Section("Leaderboard", [
        '<p class="note">Mean over images; the best of each column (per dataset) in bold. '
        "Poisson columns: sigma-aware denoisers ran through the Anscombe VST.</p>", html_table(wide)]))

    if cost_columns.measured(store):
        sections.append(Section("Cost", [
            '<p class="note">Per image, from <code>run --cost</code>: parameters, GMACs (multiply-adds, '
            "what papers call FLOPs; <code>FlopCounterMode</code>'s count halved) and latency (median and IQR after a warm-up) at "
            "the dataset's shapes and at 256x256, peak memory; n/a where a figure does not apply.</p>",
            html_table(cost_columns.table(store))]))

    plots = Section("Figures")
    for metric, table in longs.items():
        try:
            fig = figures.metric_vs_level(table)
        except UsageError as exc:  # e.g. sampler cells only: nothing has a noise level
            plots.parts.append(f'<p class="note">{html.escape(str(exc))}</p>')
            continue
        plots.parts.append(image(figures.to_png(fig), f"{metric} against noise level",
                                 f"{metric.upper()} against noise level: mean and 95% CI band over images."))
        save_figure(fig, figures_dir, f"{metric}_vs_level")
    first = longs[metrics[0]] if metrics[0] in longs else None
    if first is not None and "sigma_in" in first.columns and not set(first["sigma_in"]) <= {"oracle", "blind"}:
        fig = figures.robustness(first, figures.received_ratio(store, first))
        plots.parts.append(image(figures.to_png(fig), "robustness to the level given",
                                 f"{metrics[0].upper()} against the level each denoiser was given over the "
                                 "true one (--sigma-in): mean and 95% CI over images; blind rows dashed."))
        save_figure(fig, figures_dir, f"{metrics[0]}_vs_sigma_in")
    runtimes = figures.runtime_table(store, metrics[0])
    if runtimes.empty:
        plots.parts.append('<p class="note">No runtime figure: every cell ran on Dask, beside others '
                           "(<code>run --cost</code> measures latency alone).</p>")
    else:
        fig = figures.runtime_vs_quality(runtimes, metrics[0])
        plots.parts.append(image(figures.to_png(fig), "runtime against quality",
                                 f"Seconds per image against mean {metrics[0].upper()}, one point per "
                                 "denoiser (cells run in this process; Dask cells left out)."))
        save_figure(fig, figures_dir, f"runtime_vs_{metrics[0]}")
    sections.append(plots)

    sections.append(gallery_section(store, registry, metrics[0], galleries, figures_dir))
    sections += study

    details = Section("Full leaderboards", [
        f"<details><summary>{html.escape(m)}: one row per (dataset, noise, level, denoiser)</summary>"
        f"{html_table(t)}</details>" for m, t in longs.items()])
    sections.append(details)

    failed = tables.failed_cells(store)
    if not failed.empty:
        sections.append(Section("Cells not ranked", [plain_table(failed)]))
    sections.append(provenance_section(store, prov))
    return page(f"denoise-bench report: {store.path.name}", sections, prov)


def gallery_section(store: Store, registry: Registry, metric: str, per_level: int,
                    figures_dir: str | Path | None) -> Section:
    section = Section("Galleries")
    scales = store.level_scales()
    choices = gallery_choices(store, per_level) if per_level > 0 else pd.DataFrame()
    if choices.empty:
        section.parts.append('<p class="note">No saved outputs: run with <code>--save-images N</code> '
                             "to keep the first N images' outputs for galleries.</p>")
        return section
    for pick in choices.itertuples():
        label = f"{pick.dataset} · {pick.image_id} · {pick.noise} {levels.label(scales, pick.noise, pick.level, 'unicode')}"
        try:
            fig = figures.gallery(store, registry, pick.dataset, pick.noise, pick.level, pick.image_id,
                                  pick.repetition, metric)
        except Exception as exc:  # a dataset that cannot be reloaded costs its gallery, not the report
            section.parts.append(f'<p class="note">{html.escape(label)}: gallery unavailable ({html.escape(str(exc))})</p>')
            continue
        order = (f"clean | noisy input | outputs, best {metric.upper()} first" if has_reference(store, pick.dataset)
                 else "noisy input | outputs (real noisy images without a reference: nothing is scored)")
        section.parts.append(image(figures.to_png(fig), label,
                                   f"{label}: {order}; bottom row: the boxed region enlarged."))
        save_figure(fig, figures_dir, slug(f"gallery_{pick.dataset}_{pick.image_id}_{pick.noise}_"
                                           f"{levels.label(scales, pick.noise, pick.level)}"))
    return section


def has_reference(store: Store, dataset: str) -> bool:
    """Whether the dataset's cells were scored against a reference (not so for ``rni15``)."""
    return not store.query("SELECT 1 FROM scores JOIN cells ON cells.key = scores.cell_key "
                           "WHERE cells.dataset = ? LIMIT 1", (dataset,)).empty



def page(title: str, sections: list[Section], prov: dict) -> str:
    contents = " · ".join(f'<a href="#{html.escape(s.title.lower().replace(" ", "-"))}">{html.escape(s.title)}</a>'
                          for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n"
            f'<p class="note">Store {html.escape(prov["store"])} · {prov["cells"]} cells · runs '
            f'{html.escape(", ".join(prov["run_ids"]))} · generated {html.escape(prov["generated"])}</p>\n'
            f"<nav>{contents}</nav>\n" + "\n".join(s.html() for s in sections) + "\n</body>\n</html>\n")


def write(text: str, output: str | Path) -> Path:
    """Write atomically: a finished file or none."""
    output = Path(output)
    write_texts({output: text})
    return output
