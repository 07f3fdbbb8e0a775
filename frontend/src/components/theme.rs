//! The plots' colours, matching the page's dark theme in style.css.

use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::Ranged;
use plotters::prelude::{DrawingBackend, IntoFont};
use plotters::style::RGBColor;

pub const BACKGROUND: RGBColor = RGBColor(22, 27, 34);
pub const GRID: RGBColor = RGBColor(38, 44, 54);
pub const MUTED: RGBColor = RGBColor(139, 148, 158);
pub const ACCENT: RGBColor = RGBColor(88, 166, 255);
pub const UP: RGBColor = RGBColor(63, 185, 80);
pub const DOWN: RGBColor = RGBColor(248, 81, 73);

/// The grid and labels both plots share: horizontal lines only, muted labels.
pub fn dark_mesh<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.disable_x_mesh()
        .bold_line_style(GRID)
        .light_line_style(BACKGROUND)
        .axis_style(GRID)
        .label_style(("sans-serif", 12).into_font().color(&MUTED))
}
