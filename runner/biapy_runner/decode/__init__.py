"""From a raw prediction to results: instance decoding, post-processing, filters, points."""
