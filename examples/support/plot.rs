//! Line charts as PNG files, drawn with plotters and the DejaVu Sans font
//! embedded from `assets/fonts`, so no system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// One line of a chart.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// `(x, y)` points in x order; points with a non-finite or (on a log
    /// axis) non-positive y are skipped.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub color: RGBColor,
    /// Dashed instead of solid.
    pub dashed: bool,
}

/// One chart of a figure.
pub struct Panel {
    /// Caption above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Lines to draw.
    pub series: Vec<Series>,
}

static FONT: Once = Once::new();

fn register_embedded_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        // Registration fails only for bytes that are not a font; if it did,
        // the labels would be missing and drawing reports the error.
        let _ = register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

/// Draws `panels` side by side into a PNG at `path`, each `panel_width` x
/// `height` pixels.
///
/// # Errors
/// A message naming the file if drawing or writing fails.
pub fn draw_png(path: &Path, panels: &[Panel], panel_width: u32, height: u32) -> Result<(), String> {
    register_embedded_font();
    let fail = |e: &dyn std::fmt::Display| format!("{}: could not draw the plot: {e}", path.display());
    let width = panel_width * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(panel, area).map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// Returns the finite points of `series`, positive ones only on a log axis.
fn drawable(series: &Series, log_y: bool) -> Vec<(f64, f64)> {
    series.points.iter().copied().filter(|&(x, y)| x.is_finite() && y.is_finite() && (!log_y || y > 0.0)).collect()
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let points: Vec<(f64, f64)> = panel.series.iter().flat_map(|s| drawable(s, panel.log_y)).collect();
    let (mut x_min, mut x_max) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (mut y_min, mut y_max) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    if points.is_empty() {
        (x_min, x_max, y_min, y_max) = (0.0, 1.0, 0.1, 1.0);
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    if y_max <= y_min {
        y_max = y_min + y_min.abs().max(1e-3);
    }

    let mut builder = ChartBuilder::on(area);
    builder.caption(&panel.title, ("sans-serif", 20)).margin(12).x_label_area_size(40).y_label_area_size(70);
    if panel.log_y {
        let mut chart = builder.build_cartesian_2d(x_min..x_max, (y_min * 0.8..y_max * 1.25).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .y_desc(&panel.y_label)
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .label_style(("sans-serif", 13))
            .draw()?;
        draw_series(&mut chart, panel)?;
        legend(&mut chart)?;
    } else {
        let pad = (y_max - y_min) * 0.05;
        let mut chart = builder.build_cartesian_2d(x_min..x_max, y_min - pad..y_max + pad)?;
        chart.configure_mesh().x_desc(&panel.x_label).y_desc(&panel.y_label).label_style(("sans-serif", 13)).draw()?;
        draw_series(&mut chart, panel)?;
        legend(&mut chart)?;
    }
    Ok(())
}

fn draw_series<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    panel: &Panel,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64>,
{
    for series in &panel.series {
        let style = series.color.stroke_width(2);
        let points = drawable(series, panel.log_y);
        let color = series.color;
        let legend_entry = move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2));
        if series.dashed {
            chart.draw_series(DashedLineSeries::new(points, 8, 5, style))?.label(&series.label).legend(legend_entry);
        } else {
            chart.draw_series(LineSeries::new(points, style))?.label(&series.label).legend(legend_entry);
        }
    }
    Ok(())
}

fn legend<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
}
