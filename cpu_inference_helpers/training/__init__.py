"""Fine-tuning the shipped QA checkpoint: run_qa's training features (`features`), the resumable trainer
(`python -m cpu_inference_helpers.training.train`), the training curve (`...training.curve`), and the
export of trained weights into the shipped format (`export`)."""
