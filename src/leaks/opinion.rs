//! What the leak-site model says about one component: the interface between the ONNX model (`model`,
//! `patch`) and the fusion with the anatomical rules (`classify`).

use super::Site;

/// The model's output classes, in the order of the ONNX output vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelClass {
    Site(Site),
    /// A bright component that is not leaked cement (streak, metal remnant, registration residue).
    NotCement,
}

impl ModelClass {
    /// Output order of the model; the training script uses the same order and names.
    pub const ALL: [ModelClass; 5] = [
        ModelClass::Site(Site::Canal),
        ModelClass::Site(Site::PosteriorVein),
        ModelClass::Site(Site::Disc),
        ModelClass::Site(Site::Paraspinal),
        ModelClass::NotCement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelClass::Site(site) => site.name(),
            ModelClass::NotCement => "not_cement",
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Class probabilities for one component, indexed like [`ModelClass::ALL`]; they sum to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelOpinion {
    pub probabilities: [f32; 5],
}

impl ModelOpinion {
    pub fn probability(&self, class: ModelClass) -> f32 {
        self.probabilities[class.index()]
    }

    /// The most probable class and its probability.
    pub fn best(&self) -> (ModelClass, f32) {
        ModelClass::ALL
            .into_iter()
            .map(|c| (c, self.probability(c)))
            .fold((ModelClass::NotCement, f32::MIN), |best, c| if c.1 > best.1 { c } else { best })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_order_is_the_model_output_order() {
        let names: Vec<_> = ModelClass::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["canal", "posterior_vein", "disc", "paraspinal", "not_cement"]);
        for (i, c) in ModelClass::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        let o = ModelOpinion { probabilities: [0.1, 0.6, 0.1, 0.1, 0.1] };
        assert_eq!(o.best().0, ModelClass::Site(Site::PosteriorVein));
    }
}
